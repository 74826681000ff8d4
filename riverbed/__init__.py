"""Riverbed: settings, the CLI and the process supervisor that wire the pipeline together."""
