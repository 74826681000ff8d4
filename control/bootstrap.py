"""The first key: how a fresh install is usable at once without an open door.

Every route but health and the API description needs a key, so a fresh data dir would lock
its owner out. ``riverbed up`` therefore mints an admin key on the first start (no active key
in the store), writes it to ``admin.key`` in the data dir (mode 0600, like an SSH key) and
prints it once, as Jupyter and Argo CD do with their first token. Later starts reuse that file
while the key in it still works; once the owner has revoked it and made their own keys,
nothing new is minted, unless the demo asks for one to post its traffic with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from control.keys import ApiKeys
from control.private_files import write_private
from control.scopes import ROLES

ADMIN_KEY_FILE = "admin.key"


@dataclass(frozen=True)
class AdminKey:
    key: str
    path: Path
    created: bool  # minted by this call (else read back from the file)


def ensure_admin_key(keys: ApiKeys, data_dir: Path, *, force: bool = False) -> AdminKey | None:
    """The working admin key of ``data_dir/admin.key``, minting it when the store has no active
    key (or ``force``); None when the owner manages keys themselves."""
    path = data_dir / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if keys.verify(key) is not None:
            return AdminKey(key, path, created=False)
    if not force and keys.has_active():
        return None
    key, _ = keys.create("admin (first start)", ROLES["admin"], roles=["admin"])
    write_private(path, key + "\n")
    return AdminKey(key, path, created=True)
