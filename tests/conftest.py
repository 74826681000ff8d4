"""Fixtures that start the real embedded engines and the pipeline's processes.

Session-scoped: tansu and valkey start once on free loopback ports; the pipeline (API with
chdb, agents, flow, Redis sink) starts once as child processes exactly as ``riverbed up`` runs
them. Nothing here is mocked.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from control.bootstrap import ensure_admin_key
from control.keys import key_store
from riverbed.core.live_log import crash_recorder
from riverbed.core.settings import Settings
from riverbed.embedded import Engine, free_port, start_clickhouse, start_kafka, start_redis
from riverbed.supervisor import Supervisor
from tests.helpers.postgres import Postgres, start_postgres
from tests.helpers.wait import wait_until

WINDOW_SECONDS = 5
LATENESS_SECONDS = 2
PIPELINE_COMPONENTS = ("api", "agents", "flow", "sink-redis", "sink-clickhouse")


def admin_key(data_dir: Path, database_url: str | None = None) -> str:
    """The admin key of ``data_dir`` (its ``admin.key``), minted as ``riverbed up`` mints it, in
    the control-plane store of ``database_url`` (default: SQLite in ``data_dir``)."""
    settings = Settings(data_dir=data_dir, database_url=database_url)
    admin = ensure_admin_key(key_store(settings), data_dir, force=True)
    assert admin is not None
    return admin.key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def api_client(base: str, key: str, timeout: float | None = 30) -> httpx.Client:
    """An HTTP client of the API that presents ``key``."""
    return httpx.Client(base_url=base, headers=bearer(key), timeout=timeout)


@dataclass
class Engines:
    kafka: Engine
    redis: Engine
    data_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP": self.kafka.url, "REDIS_URL": self.redis.url}


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    data_dir = tmp_path_factory.mktemp("engines")
    kafka = start_kafka(data_dir)
    try:
        redis = start_redis(data_dir)
    except Exception:
        kafka.stop()
        raise
    yield Engines(kafka, redis, data_dir)
    redis.stop()
    kafka.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A PostgreSQL server of Debian's, for the control plane's production path."""
    server = start_postgres()
    yield server
    server.stop()


@dataclass
class Pipeline:
    base_url: str
    data_dir: Path
    engines: Engines
    supervisor: Supervisor

    @functools.cached_property
    def key(self) -> str:
        """An admin key: every scope, every stream."""
        return admin_key(self.data_dir)

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.key)

    def client(self) -> httpx.Client:
        return api_client(self.base_url, self.key)

    def query(self, sql: str) -> list[list[Any]]:
        with self.client() as client:
            response = client.post("/v1/query", json={"sql": sql})
        response.raise_for_status()
        return response.json()["rows"]

    @property
    def sql_port(self) -> int:
        """The port of the analysts' ClickHouse endpoint (``api.sql_gateway``)."""
        return int(self.supervisor.env["RIVERBED_SQL_PORT"])

    def crashes(self) -> dict[str, list[int]]:
        """Exit codes of every child that died since start (restarted by the supervisor)."""
        return {c.name: c.history for c in self.supervisor.children if c.history}

    def logs(self) -> str:
        return read_logs(self.data_dir)


def read_logs(data_dir: Path, lines: int = 30) -> str:
    """The tail of every component's log, for failure messages."""
    parts = []
    for log in sorted((data_dir / "logs").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(parts)


class StackSupervisor(Supervisor):
    """The components' supervisor, which also stops the engines started for them, last."""

    def __init__(self, *args: Any, engines: Sequence[Engine] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engines = list(engines)

    def stop(self, timeout: float = 15.0) -> None:
        super().stop(timeout)
        for engine in reversed(self.engines):
            engine.stop()


def start_components(
    data_dir: Path,
    env: dict[str, str],
    components: Sequence[str],
    timeout: float = 120,
    interval: float = 0.5,
) -> tuple[Supervisor, str]:
    """Run components as ``riverbed up`` does (watched, restarted) and wait for ``/readyz``.

    Returns the supervisor and the API's base URL; stops everything if it never gets ready.
    ``admin_key(data_dir)`` is a key of the started API. Without ``CLICKHOUSE_URL`` in ``env``
    the data dir's embedded ClickHouse starts first, as ``riverbed up`` starts it.
    """
    admin_key(data_dir, env.get("DATABASE_URL"))
    port = free_port()
    engines = []
    if "CLICKHOUSE_URL" not in env:
        engines.append(start_clickhouse(data_dir))
        env = {**env, "CLICKHOUSE_URL": engines[0].url}
    sql_port = free_port()
    supervisor = StackSupervisor(
        data_dir / "logs",
        {
            **env,
            "RIVERBED_DATA_DIR": str(data_dir),
            "RIVERBED_API_PORT": str(port),
            "RIVERBED_SQL_PORT": str(sql_port),
        },
        report=print,
        engines=engines,
        on_crash=crash_recorder(env["REDIS_URL"]) if "REDIS_URL" in env else None,
    )
    for component in components:
        name, _, replica = component.partition("#")  # "agents#2": a second agents worker
        supervisor.add(name, int(replica) - 1 if replica else 0)
    threading.Thread(target=supervisor.run, args=(interval,), daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(f"{base}/readyz", timeout=5).status_code == 200,
            timeout,
            message=f"{', '.join(components)} to be ready",
        )
    except AssertionError:
        supervisor.stop()
        raise
    return supervisor, base


@dataclass
class OwnStack:
    """A pipeline with a broker and a Redis database of its own (see :func:`own_stack`)."""

    base: str
    kafka: Engine
    redis_url: str
    supervisor: Supervisor
    key: str  # an admin key

    @functools.cached_property
    def api(self) -> httpx.Client:
        return api_client(self.base, self.key)


@contextlib.contextmanager
def own_stack(
    engines: Engines,
    data_dir: Path,
    database: int,
    env: dict[str, str],
    components: Sequence[str] = PIPELINE_COMPONENTS,
) -> Iterator[OwnStack]:
    """For tests that kill or scale processes: nothing they do can disturb the shared pipeline.

    Uses Redis database ``database`` of the session's valkey (emptied first) and a new tansu.
    """
    kafka = start_kafka(data_dir)
    redis_url = engines.redis.url.rsplit("/", 1)[0] + f"/{database}"
    redis.Redis.from_url(redis_url).flushdb()
    full_env = {"KAFKA_BOOTSTRAP": kafka.url, "REDIS_URL": redis_url, **env}
    try:
        supervisor, base = start_components(data_dir, full_env, components, interval=0.2)
    except AssertionError:
        kafka.stop()
        raise
    try:
        yield OwnStack(base, kafka, redis_url, supervisor, admin_key(data_dir))
    finally:
        supervisor.stop()
        kafka.stop()


@pytest.fixture(scope="session")
def pipeline(engines: Engines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    data_dir = tmp_path_factory.mktemp("pipeline")
    env = {
        **engines.env,
        # Short windows, so the tests see windows close (final values) within their deadlines.
        "RIVERBED_WINDOW_SECONDS": str(WINDOW_SECONDS),
        "RIVERBED_ALLOWED_LATENESS_SECONDS": str(LATENESS_SECONDS),
        "RIVERBED_WINDOW_IDLE_GRACE_SECONDS": "1",
        "RIVERBED_BODY_READ_TIMEOUT_SECONDS": "2",  # so a test can be a slow client
        "RIVERBED_HEADER_READ_TIMEOUT_SECONDS": "2",
        "RIVERBED_LOG_LEVEL": "WARNING",
        "RIVERBED_SQL_MAX_RESULT_ROWS": "1000000",  # so a test can go past it
        "RIVERBED_SQL_ROLE_LIMITS": '{"admin": {"max_result_rows": 3000000}}',
    }
    try:
        supervisor, base = start_components(data_dir, env, (*PIPELINE_COMPONENTS, "sql"))
    except AssertionError:
        raise AssertionError("pipeline did not start:\n" + read_logs(data_dir)) from None
    pipeline = Pipeline(base, data_dir, engines, supervisor)
    yield pipeline
    supervisor.stop()
