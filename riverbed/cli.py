"""``riverbed``: start the pipeline (``up``), run one component (``run``), inspect streams."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from riverbed.cli_access import add_access_parsers
from riverbed.components import NAMES, component
from riverbed.core.settings import Settings

EPILOG = """\
Configuration comes from RIVERBED_* environment variables (see docs/operations.md).
KAFKA_BOOTSTRAP, REDIS_URL and CLICKHOUSE_URL select external servers; unset, Riverbed starts
embedded engines (tansu, valkey, chdb) under the data dir.
"""


def _configure_logging(level: str = "WARNING") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_up(args: argparse.Namespace) -> int:
    from riverbed.up import up

    overrides: dict[str, object] = {}
    if args.data_dir:
        overrides["data_dir"] = Path(args.data_dir)
    if args.port is not None:
        overrides["api_port"] = args.port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    return up(settings, demo=args.demo, demo_rate=args.demo_rate)


def cmd_run(args: argparse.Namespace) -> int:
    _configure_logging(os.environ.get("RIVERBED_LOG_LEVEL", "WARNING"))
    settings = Settings()
    component(args.component).load()(settings)
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
    add_access_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
