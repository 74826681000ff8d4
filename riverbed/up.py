"""``riverbed up``: start the engines, run every component supervised, print where things are,
and on Ctrl-C close ingest, drain what was accepted, and stop everything.

Embedded by default: tansu (Kafka, in memory), valkey (Redis, AOF) and chdb (behind its HTTP
front, :mod:`riverbed.chserver`). ``KAFKA_BOOTSTRAP``, ``REDIS_URL`` and ``CLICKHOUSE_URL``
select servers instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO

import redis

from control.bootstrap import AdminKey, ensure_admin_key
from control.db import control_sessions
from control.keys import ApiKeys
from control.scopes import GRANTABLE
from control.signing import KeyProblem
from control.tokens import MissingSecret, signing_keys
from control.users import Users
from riverbed.components import instances
from riverbed.core.errors import RiverbedError
from riverbed.core.live_log import crash_recorder, record_status
from riverbed.core.settings import Settings
from riverbed.core.topology import ENGINES_KEY
from riverbed.demo import DEMO_METRICS, DemoTraffic
from riverbed.embedded import (
    EngineStartError,
    port_is_free,
    start_clickhouse,
    start_kafka,
    start_redis,
)
from riverbed.engine_watch import EngineWatcher, WatchedEngine, engine_record
from riverbed.supervisor import Supervisor


@dataclass
class Stack:
    """What ``up`` started, so that the stop can undo it in reverse."""

    settings: Settings
    data_dir: Path
    env: dict[str, str]
    engines: list[WatchedEngine] = field(default_factory=list)
    admin_key: AdminKey | None = None
    has_admin_login: bool = False

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.api_port}"

    @property
    def redis_url(self) -> str:
        """The embedded valkey's, or the configured server's."""
        return self.env.get("REDIS_URL") or self.settings.require_redis()


def up(settings: Settings, demo: bool = False, demo_rate: float = 50.0) -> int:
    """Run until SIGINT/SIGTERM; the exit status is 0, or 1/2 when nothing could start."""
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # status lines must show up when piped
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = settings.model_copy(update={"data_dir": data_dir})
    if not port_is_free(settings.api_port, settings.host):
        print(
            f"error: API port {settings.api_port} is in use; pass --port or set RIVERBED_API_PORT",
            file=sys.stderr,
        )
        return 2
    if not port_is_free(settings.sql_port, settings.host):
        print(
            f"error: the analysts' ClickHouse port {settings.sql_port} is in use (a ClickHouse "
            "server?); set RIVERBED_SQL_PORT",
            file=sys.stderr,
        )
        return 2
    try:
        lock = lock_data_dir(data_dir)
    except DataDirBusy as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Riverbed starting (data dir {data_dir})")
    try:
        _, generated = signing_keys(settings)
    except (MissingSecret, KeyProblem, OSError) as exc:
        print(f"error: cannot sign logins: {getattr(exc, 'detail', exc)}", file=sys.stderr)
        return 2
    _metrics_file(settings, demo)
    stack = Stack(settings, data_dir, _child_env(settings))
    sessions = control_sessions(settings)  # one connection pool, migrated once
    stack.admin_key = ensure_admin_key(ApiKeys(sessions, GRANTABLE), data_dir, force=demo)
    stack.has_admin_login = Users(sessions).has_admin()
    if generated is not None:
        print(f"  logins   signed with a development secret ({generated})")
    try:
        _start_engines(stack)
    except EngineStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for watched in stack.engines:
            watched.engine.stop()
        return 1
    try:
        _run(stack, demo, demo_rate)
    finally:
        lock.close()
    return 0


class DataDirBusy(RiverbedError):
    """Another ``riverbed up`` holds the data dir."""


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold ``riverbed.pid`` in the data dir (an exclusive flock) for as long as we run.

    Two ``riverbed up`` on one data dir would start two valkeys on one AOF and two chdb
    writers; the second is refused at once with the first one's pid. The kernel drops the lock
    when the holder exits, however it exits, so a stale file never blocks a restart.
    """
    handle = open(data_dir / "riverbed.pid", "a+")  # noqa: SIM115 - held until we exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "unknown"
        handle.close()
        raise DataDirBusy(
            f"another riverbed up (pid {other}) is using the data dir {data_dir}; stop it "
            "first or pass another --data-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _child_env(settings: Settings) -> dict[str, str]:
    return {
        "RIVERBED_DATA_DIR": str(settings.data_dir),
        "RIVERBED_API_PORT": str(settings.api_port),
        "RIVERBED_SQL_PORT": str(settings.sql_port),
        "RIVERBED_HOST": settings.host,
    }


def _metrics_file(settings: Settings, demo: bool) -> None:
    path = settings.metrics_path
    if demo and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(DEMO_METRICS)
        print(f"  metrics  {path}  (demo declarations written; edit freely)")
    else:
        print(f"  metrics  {path}" + ("" if path.exists() else "  (none yet)"))


def _start_engines(stack: Stack) -> None:
    settings, data_dir = stack.settings, stack.data_dir
    if settings.embedded_kafka:
        # A new in-memory broker starts with empty topics: snapshots of offsets into the
        # previous broker's topics would make the flow wait for records that never come.
        shutil.rmtree(settings.flow_recovery_dir, ignore_errors=True)
        kafka = start_kafka(data_dir, settings.kafka_port)
        port = _port(kafka.url)
        stack.engines.append(
            WatchedEngine(
                "kafka",
                "kafka (tansu)",
                kafka,
                partial(start_kafka, data_dir, port),
                lost_on_restart="its topics were in memory: the API replays the journal of "
                "accepted events into the new broker; open windows are computed again",
            )
        )
        stack.env["KAFKA_BOOTSTRAP"] = kafka.url
        # Its acks are not durable: the API journals what it accepts and refills the broker.
        stack.env["RIVERBED_JOURNAL"] = "true"
        print(
            f"  kafka    {kafka.url}  (embedded tansu, in-memory; journal in "
            f"{settings.journal_dir})"
        )
    else:
        print(f"  kafka    {settings.kafka_bootstrap}")
    if settings.embedded_redis:
        valkey = start_redis(data_dir, settings.redis_port)
        port = _port(valkey.url)
        stack.engines.append(
            WatchedEngine("redis", "redis (valkey)", valkey, partial(start_redis, data_dir, port))
        )
        stack.env["REDIS_URL"] = valkey.url
        print(f"  redis    {valkey.url}  (embedded valkey, AOF in {data_dir / 'redis'})")
    else:
        print(f"  redis    {settings.redis_url}")
    if settings.embedded_clickhouse:
        clickhouse = start_clickhouse(data_dir, settings.clickhouse_port)
        port = _port(clickhouse.url)
        stack.engines.append(
            WatchedEngine(
                "clickhouse",
                "clickhouse (chdb)",
                clickhouse,
                partial(start_clickhouse, data_dir, port),
            )
        )
        stack.env["CLICKHOUSE_URL"] = clickhouse.url
        print(
            f"  clickhouse  http://127.0.0.1:{port}  (embedded chdb in {data_dir / 'clickhouse'})"
        )
    else:
        print(f"  clickhouse  {_without_password(settings.clickhouse_url)}")


def _run(stack: Stack, demo: bool, demo_rate: float) -> None:
    supervisor = Supervisor(
        stack.data_dir / "logs", stack.env, on_crash=crash_recorder(stack.redis_url)
    )
    for name, instance in instances(stack.settings):
        supervisor.add(name, instance)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=supervisor.run, daemon=True).start()
    watcher = _watch_engines(stack, supervisor)
    traffic = None
    try:
        if _wait_ready(stack.base_url, 120):
            _announce(stack)
            if demo and stack.admin_key is not None:
                traffic = DemoTraffic(stack.base_url, stack.admin_key.key, rate=demo_rate)
                threading.Thread(target=traffic.run, daemon=True).start()
                print(f"  demo         posting ~{demo_rate:g} events/s (pageviews, purchases)")
            print("Ctrl-C stops everything.")
        else:
            print(f"! the API did not become ready; see {stack.data_dir / 'logs' / 'api.log'}")
        stop.wait()
    finally:
        watcher.stop()
        _stop(stack, supervisor, traffic)


def _announce(stack: Stack) -> None:
    base = stack.base_url
    print(f"\nRiverbed is up: {base}")
    print(f"  streams      {base}/v1/streams")
    print(f"  live (SSE)   {base}/v1/live/metrics")
    print(f"  metrics      {base}/v1/metrics")
    print(f"  OpenAPI      {base}/openapi.json")
    print(f"  API docs     {base}/docs/")
    print(f"  health       {base}/readyz")
    sql = f"http://{stack.settings.host}:{stack.settings.sql_port}"
    print(f"  ClickHouse   {sql}  (for analysts' tools: any user, an API key as the password)")
    print(f"  logs         {stack.data_dir / 'logs'}")
    if not stack.has_admin_login:
        print("  logins       none yet: riverbed users create-admin --username NAME")
    admin = stack.admin_key
    if admin is None:
        print("  API keys     riverbed keys create --name NAME --role producer  (see --help)")
        return
    if admin.created or stack.settings.on_loopback:
        print(f"  admin key    {admin.key}")
    print(f"               (kept in {admin.path}; try:")
    print(f'               curl -H "Authorization: Bearer $(cat {admin.path})" {base}/v1/streams)')


def _stop(stack: Stack, supervisor: Supervisor, traffic: DemoTraffic | None) -> None:
    print("\nstopping...")
    if traffic:
        traffic.stop()
    if stack.settings.embedded_kafka and "KAFKA_BOOTSTRAP" in stack.env:
        _drain_embedded(supervisor, stack.env["KAFKA_BOOTSTRAP"], stack.redis_url)
    supervisor.stop()
    for watched in reversed(stack.engines):
        watched.engine.stop()
    print("stopped.")


def _without_password(url: str | None) -> str:
    """A server URL fit to print: its password, if any, masked."""
    from urllib.parse import urlsplit

    parts = urlsplit(url or "")
    if parts.password is None:
        return url or ""
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _watch_engines(stack: Stack, supervisor: Supervisor) -> EngineWatcher:
    """Restart a dead embedded engine in place; a new broker restarts the pipeline on it."""

    def before_restart(watched: WatchedEngine) -> None:
        if watched.name == "kafka":
            supervisor.pause("the broker died; they start again on the new one")

    def after_restart(watched: WatchedEngine) -> None:
        if watched.name == "kafka":
            shutil.rmtree(stack.settings.flow_recovery_dir, ignore_errors=True)
            supervisor.resume()

    def record(watched: WatchedEngine, code: int) -> None:
        client = redis.Redis.from_url(stack.redis_url, socket_timeout=5)
        try:
            client.hset(ENGINES_KEY, watched.name, engine_record(watched, code))
        except redis.RedisError as exc:
            print(f"! could not record the restart of {watched.label} for /readyz: {exc}")
        record_status(client, "engine", engine=watched.name, state="restarted", code=code)

    watcher = EngineWatcher(stack.engines, print, before_restart, after_restart, record)
    threading.Thread(target=watcher.run, name="engine-watch", daemon=True).start()
    return watcher


def _wait_ready(url: str, timeout: float) -> bool:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _drain_embedded(supervisor: Supervisor, bootstrap: str, redis_url: str) -> None:
    """Close ingest, then wait until agents and sinks have committed everything accepted.

    The embedded broker forgets its topics when it stops; a second Ctrl-C skips the wait. A
    drain that cannot run (an engine already gone) says so and what may be lost, and the stop
    goes on: it never ends in a traceback with processes left behind.
    """
    import redis
    from confluent_kafka import KafkaException

    from riverbed.core.drain import drain
    from riverbed.core.redis import as_text
    from riverbed.core.topology import STREAMS_KEY, group_topics

    supervisor.signal("api", signal.SIGUSR1)
    force = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: force.set())
    print(
        "draining: ingest closed, waiting for accepted events to reach ClickHouse and Redis "
        "(Ctrl-C again to skip)"
    )
    try:
        # Names straight from the shared catalog: streams created at run time drain too.
        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        streams = [as_text(k) for k in client.hkeys(STREAMS_KEY)]
        if drain(bootstrap, group_topics(streams), timeout=60, report=print, abort=force):
            print("drained: every accepted event is stored")
    except (redis.RedisError, KafkaException) as exc:
        print(f"! drain failed ({type(exc).__name__}: {exc}); events not yet stored may be lost")
