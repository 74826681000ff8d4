"""The Bytewax dataflow (moving into modules of its own)."""

from streams.flow.dataflow import run

__all__ = ["run"]
