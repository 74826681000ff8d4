"""Inputs beyond the HTTP API (webhooks, file imports, pollers) live here as they are built."""
