"""``riverbed``: start the pipeline (``up``), run one component (``run``), inspect streams."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from riverbed.components import NAMES, component, instances
from riverbed.core.settings import Settings
from riverbed.supervisor import Supervisor

EPILOG = """\
Configuration comes from RIVERBED_* environment variables (see docs/operations.md).
KAFKA_BOOTSTRAP, REDIS_URL and CLICKHOUSE_URL select external servers; unset, Riverbed starts
embedded engines (tansu, valkey, chdb) under the data dir.
"""


def _configure_logging(level: str = "WARNING") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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


def cmd_up(args: argparse.Namespace) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # status lines must show up when piped
    from riverbed.demo import DEMO_METRICS, DemoTraffic
    from riverbed.embedded import EngineStartError, port_is_free, start_kafka, start_redis

    overrides = {}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if args.port is not None:
        overrides["api_port"] = args.port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if not port_is_free(settings.api_port, settings.host):
        print(
            f"error: API port {settings.api_port} is in use; pass --port or set RIVERBED_API_PORT",
            file=sys.stderr,
        )
        return 2
    engines = []
    env = {
        "RIVERBED_DATA_DIR": str(data_dir),
        "RIVERBED_API_PORT": str(settings.api_port),
        "RIVERBED_HOST": settings.host,
    }
    print(f"Riverbed starting (data dir {data_dir})")
    metrics_path = settings.model_copy(update={"data_dir": data_dir}).metrics_path
    if args.demo and not metrics_path.exists():
        metrics_path.parent.mkdir(parents=True, exist_ok=True)
        metrics_path.write_text(DEMO_METRICS)
        print(f"  metrics  {metrics_path}  (demo declarations written; edit freely)")
    else:
        print(f"  metrics  {metrics_path}" + ("" if metrics_path.exists() else "  (none yet)"))
    try:
        if settings.embedded_kafka:
            # A new in-memory broker starts with empty topics: snapshots of offsets into the
            # previous broker's topics would make the flow wait for records that never come.
            shutil.rmtree(
                settings.model_copy(update={"data_dir": data_dir}).flow_recovery_dir,
                ignore_errors=True,
            )
            engines.append(start_kafka(data_dir, settings.kafka_port))
            env["KAFKA_BOOTSTRAP"] = engines[-1].url
            print(f"  kafka    {engines[-1].url}  (embedded tansu, in-memory)")
        else:
            print(f"  kafka    {settings.kafka_bootstrap}")
        if settings.embedded_redis:
            engines.append(start_redis(data_dir, settings.redis_port))
            env["REDIS_URL"] = engines[-1].url
            print(f"  redis    {engines[-1].url}  (embedded valkey, AOF in {data_dir / 'redis'})")
        else:
            print(f"  redis    {settings.redis_url}")
    except EngineStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        for engine in engines:
            engine.stop()
        return 1
    if settings.embedded_clickhouse:
        print(
            f"  clickhouse  embedded chdb in {data_dir / 'clickhouse'} (owned by the api process)"
        )
    else:
        print(f"  clickhouse  {settings.clickhouse_url}")

    supervisor = Supervisor(data_dir / "logs", env)
    for name, instance in instances(settings):
        supervisor.add(name, instance)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    watcher = threading.Thread(target=supervisor.run, daemon=True)
    watcher.start()
    base = f"http://{settings.host}:{settings.api_port}"
    demo = None
    try:
        if not _wait_ready(base, 120):
            print(f"! the API did not become ready; see {data_dir / 'logs' / 'api.log'}")
        else:
            print(f"\nRiverbed is up: {base}")
            print(f"  streams      {base}/v1/streams")
            print(f"  live (SSE)   {base}/v1/live/metrics")
            print(f"  metrics      {base}/v1/metrics")
            print(f"  OpenAPI      {base}/openapi.json")
            print(f"  API docs     {base}/docs/")
            print(f"  health       {base}/readyz")
            print(f"  logs         {data_dir / 'logs'}")
            if args.demo:
                demo = DemoTraffic(base, rate=args.demo_rate)
                threading.Thread(target=demo.run, daemon=True).start()
                print(f"  demo         posting ~{args.demo_rate:g} events/s (pageviews, purchases)")
            print("Ctrl-C stops everything.")
        stop.wait()
    finally:
        print("\nstopping...")
        if demo:
            demo.stop()
        if settings.embedded_kafka and "KAFKA_BOOTSTRAP" in env:
            redis_url = env.get("REDIS_URL") or settings.require_redis()
            _drain_embedded(supervisor, env["KAFKA_BOOTSTRAP"], redis_url)
        supervisor.stop()
        for engine in reversed(engines):
            engine.stop()
        print("stopped.")
    return 0


def _drain_embedded(supervisor: Supervisor, bootstrap: str, redis_url: str) -> None:
    """Close ingest, then wait until agents and sinks have committed everything accepted.

    The embedded broker forgets its topics when it stops; a second Ctrl-C skips the wait.
    """
    import redis

    from riverbed.core.redis import as_text
    from riverbed.core.topology import STREAMS_KEY, group_topics
    from riverbed.drain import drain

    # Names straight from the shared catalog: streams created at run time must drain too.
    client = redis.Redis.from_url(redis_url)
    streams = [as_text(k) for k in client.hkeys(STREAMS_KEY)]
    supervisor.signal("api", signal.SIGUSR1)
    force = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: force.set())
    print(
        "draining: ingest closed, waiting for accepted events to reach ClickHouse and Redis "
        "(Ctrl-C again to skip)"
    )
    if drain(bootstrap, group_topics(streams), timeout=60, report=print, abort=force):
        print("drained: every accepted event is stored")


def cmd_run(args: argparse.Namespace) -> int:
    _configure_logging(os.environ.get("RIVERBED_LOG_LEVEL", "WARNING"))
    settings = Settings()
    row = component(args.component)
    if not row.wanted(settings):
        print(f"error: {row.name} {row.why_not}", file=sys.stderr)
        return 2
    row.load()(settings)
    return 0


def cmd_streams(args: argparse.Namespace) -> int:
    from schemas.catalog import load_catalog

    settings = Settings()
    catalog = load_catalog(settings.schemas_dir)
    print(json.dumps([spec.to_public() for spec in catalog.values()], indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="riverbed",
        description="Real-time event pipeline: HTTP -> Kafka -> Faust/Bytewax "
        "-> ClickHouse/Redis -> SSE.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up",
        help="start the whole pipeline (embedded engines by default)",
        description="Start engines, agents, flow, sinks and the API; Ctrl-C stops everything.",
    )
    up.add_argument("--demo", action="store_true", help="post realistic sample events")
    up.add_argument("--demo-rate", type=float, default=50.0, help="demo events/s (default 50)")
    up.add_argument("--port", type=int, help="API port (default RIVERBED_API_PORT or 8080)")
    up.add_argument("--data-dir", help="data dir (default RIVERBED_DATA_DIR or ./.riverbed)")
    up.set_defaults(func=cmd_up)

    run = commands.add_parser(
        "run",
        help="run one component in the foreground",
        description="Run one pipeline component; `up` runs all of them.",
    )
    run.add_argument("component", choices=NAMES)
    run.set_defaults(func=cmd_run)

    streams = commands.add_parser("streams", help="print the stream catalog as JSON")
    streams.set_defaults(func=cmd_streams)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
