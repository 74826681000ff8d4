"""Riverbed's base layer: what every package may import and what imports nothing of Riverbed.

Settings, the names processes share (``topology``), Kafka/Redis/ClickHouse client edges,
heartbeats and exit codes. Nothing here imports ``schemas``, ``streams``, ``sinks``, ``api`` or
the process layer above it; ``make lint`` checks that (see ``pyproject.toml``, importlinter).
"""
