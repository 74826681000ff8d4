"""Ingest: the Ingestor (``service``), the pure batch rule (``batch``) and its HTTP route."""
