"""Files only their owner may read (mode 0600): the development secrets and the first admin key
kept in the data dir."""

from __future__ import annotations

import os
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner alone, replacing what was there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def private_once(path: Path, text: str) -> str:
    """The content of ``path``; if there is none yet, ``text`` is written there first (0600).
    Whichever process gets there first wins, so two starts never hold two different secrets."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # made by an earlier start, or by another process a moment ago
    else:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(text)
    return path.read_text()
