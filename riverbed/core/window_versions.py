"""How the window tables rank a window's rows, and so which one a reader sees.

``metrics`` and ``metric_results`` are ReplacingMergeTrees that keep, per window, the row with
the highest ``version`` column; Redis's upsert script (``sinks.redis_writer``) applies the same
ranking. The flow's own version (wall-clock milliseconds of the emission) is not enough:

- A window can go out final more than once. A quiet group's idle clock gives it a final value
  early, and an event that is not late by the data then amends it (``streams.metrics.state``):
  the later final counts more events and must win.
- A window can be computed again from only part of its events: after a broker that forgot its
  records was refilled from the journal, or a segment older than the journal's retention was
  gone. That later final counts fewer events and must not win.

So the stored rank is: a running row its version; any final above every running row, ranked
by the events it counts (more wins; equal counts are the same events, and the newer row is
kept); a retraction (a session merged into another) above everything. The flow's version is
kept beside it in ``flow_version``, which readers show as ``version``.
"""

from __future__ import annotations

FINAL_BASE = 1 << 62  # far above any wall-clock version in milliseconds
RETRACTED = (1 << 63) - 1  # the highest Int64: a retraction hides the window for good


def stored_version(version: int, final: bool, count: int, deleted: bool = False) -> int:
    """The ``version`` column (the rank) of a row the flow emitted with ``version``."""
    if deleted:
        return RETRACTED
    if final:
        return FINAL_BASE + min(count, RETRACTED - FINAL_BASE - 1)
    return version


# Rows stored before ``flow_version`` existed read it from their rank, then a final's
# ``FINAL_BASE - version``: the default of the column added to an existing table.
LEGACY_FLOW_VERSION_SQL = f"if(final, {FINAL_BASE} - version, version)"
SHOWN_VERSION_SQL = "flow_version AS version"
