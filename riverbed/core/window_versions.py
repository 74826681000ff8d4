"""How the window tables rank their rows: a window's first final value is never replaced.

``metrics`` and ``metric_results`` are ReplacingMergeTrees that keep the row with the highest
``version`` per window. The flow's versions are wall-clock milliseconds, so a window computed
again later (after a broker that forgot its records was refilled from the journal, from only
part of the window's events) would replace the right final value with a smaller one. Stored,
a final row's version is therefore ``FINAL_BASE - version``: above every running value, and
higher for an earlier final than for a later one. Readers show the flow's own version
(:data:`SHOWN_VERSION_SQL`). Redis applies the same rule in its upsert script.
"""

from __future__ import annotations

FINAL_BASE = 1 << 62  # far above any wall-clock version in milliseconds


def stored_version(version: int, final: bool) -> int:
    """The ``version`` column's value for a row of the flow's ``version``."""
    return FINAL_BASE - version if final else version


def shown_version(stored: int, final: bool) -> int:
    """The flow's version of a stored row (the inverse of :func:`stored_version`)."""
    return FINAL_BASE - stored if final else stored


SHOWN_VERSION_SQL = f"if(final, {FINAL_BASE} - version, version) AS version"
