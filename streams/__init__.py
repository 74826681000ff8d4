"""Stream processing: Faust agents (validate, enrich, dedup, route) and Bytewax flows (windows)."""
