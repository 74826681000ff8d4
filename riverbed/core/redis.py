"""Redis conventions every process shares.

Clients are created per process (``redis.Redis.from_url``) and passed in; what lives here is
how Riverbed reads what Redis answers.
"""

from __future__ import annotations


def as_text(value: bytes | str) -> str:
    """Redis answers bytes (or str with decode_responses); code here wants str."""
    return value.decode() if isinstance(value, bytes) else value
