"""The Starlette API: ingest, queries, live updates over server-sent events."""
