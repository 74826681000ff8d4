"""``riverbed``: start the pipeline (``up``), run one component (``run``), inspect streams."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

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


def _keys(args: argparse.Namespace) -> Any:
    from control.keys import key_store

    overrides = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    return key_store(Settings(**overrides))  # type: ignore[arg-type]


def cmd_keys_create(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from control.scopes import ROLES
    from riverbed.core.errors import Invalid

    expires = timedelta(days=args.expires_days) if args.expires_days else None
    scopes = set(args.scope or [])
    for role in args.role or []:
        scopes |= ROLES[role]
    if not scopes:
        print("error: give the key a --role or at least one --scope", file=sys.stderr)
        return 2
    try:
        key, info = _keys(args).create(args.name, scopes, args.stream, expires)
    except Invalid as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    print(key)
    print(
        f"# {info.name}: scopes {', '.join(info.scopes)}"
        + (f"; streams {', '.join(info.streams)}" if info.streams else "; every stream")
        + (f"; expires {info.expires_at:%Y-%m-%d %H:%M} UTC" if info.expires_at else "")
        + ". Shown once: store it now.",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    for info in _keys(args).list():
        state = "revoked" if info.revoked_at else "active"
        used = f"{info.last_used_at:%Y-%m-%d %H:%M}" if info.last_used_at else "never"
        print(f"{info.prefix}  {state:7}  {info.name}  scopes={','.join(info.scopes)}  used={used}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from control.keys import KeyNotFound

    try:
        info = _keys(args).revoke(args.prefix)
    except KeyNotFound as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    print(f"revoked {info.prefix} ({info.name})")
    return 0


def _keys_parser(commands: Any) -> None:
    from control.scopes import GRANTABLE, ROLES

    keys = commands.add_parser(
        "keys",
        help="create, list and revoke API keys",
        description="API keys for producers and services: scoped, shown once, stored as a "
        "digest (control plane: SQLite in the data dir, or DATABASE_URL).",
    )
    keys.add_argument("--data-dir", help="the data dir whose control.db holds the keys")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what uses it")
    create.add_argument(
        "--role",
        action="append",
        choices=sorted(ROLES),
        help="grant a role's scopes (repeatable): "
        + "; ".join(f"{name}: {', '.join(sorted(scopes))}" for name, scopes in ROLES.items()),
    )
    create.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help=f"a scope it grants (repeatable): {', '.join(sorted(GRANTABLE))}",
    )
    create.add_argument(
        "--stream", action="append", help="limit it to this stream (repeatable; default all)"
    )
    create.add_argument("--expires-days", type=int, help="expire it after this many days")
    create.set_defaults(func=cmd_keys_create)
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.set_defaults(func=cmd_keys_list)
    revoke = actions.add_parser("revoke", help="revoke a key by its prefix")
    revoke.add_argument("prefix")
    revoke.set_defaults(func=cmd_keys_revoke)


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
    _keys_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
