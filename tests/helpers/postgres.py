"""A real PostgreSQL server for the tests of the production path: Debian's binaries, a cluster of
its own in a temporary directory, on a free loopback port, stopped at the end.

``make test`` installs Debian's ``postgresql`` package when its binaries are missing
(``tests/helpers/install-postgres``). PostgreSQL refuses to run as root, so as root the cluster
belongs to the ``postgres`` system user the package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from riverbed.embedded import free_port
from tests.helpers.wait import wait_until


def binaries() -> Path:
    """The directory of ``initdb`` and ``postgres`` (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise RuntimeError(
        "PostgreSQL's binaries are missing; `make test` installs them "
        "(tests/helpers/install-postgres), or: apt-get install postgresql"
    )


@dataclass
class Postgres:
    process: subprocess.Popen[bytes]
    root: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://riverbed@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        subprocess.run(
            [
                str(binaries() / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "riverbed",
                name,
            ],
            check=True,
            capture_output=True,
        )
        return self.url(name)

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start_postgres(timeout: float = 60) -> Postgres:
    """initdb a cluster (trust authentication on loopback: a throwaway test server) and start
    it; returns once it accepts connections."""
    bin_dir = binaries()
    root = Path(tempfile.mkdtemp(prefix="riverbed-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    subprocess.run(
        _as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "riverbed",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale",
                "C",
            ]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        _as_owner(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(sockets),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ]
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Postgres(process, root, port)
    ready = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)]

    def accepting() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited with code {process.returncode}")
        return subprocess.run(ready, capture_output=True, check=False).returncode == 0

    try:
        wait_until(accepting, timeout, message=f"PostgreSQL to accept connections on {port}")
    except AssertionError:
        server.stop()
        raise
    return server
