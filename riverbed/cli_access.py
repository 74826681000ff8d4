"""``riverbed keys`` and ``riverbed users``: what admins do with access, from the shell.

Both work on the control-plane store of the data dir (``--data-dir``) or of ``DATABASE_URL``,
the same one the API reads, so a running Riverbed sees the change within seconds.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path
from typing import Any

from control.scopes import GRANTABLE, ROLES
from riverbed.core.errors import RiverbedError
from riverbed.core.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    return Settings(**overrides)  # type: ignore[arg-type]


def _keys(args: argparse.Namespace) -> Any:
    from control.keys import key_store

    return key_store(_settings(args))


def cmd_keys_create(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from riverbed.core.errors import Invalid

    expires = timedelta(days=args.expires_days) if args.expires_days else None
    scopes = set(args.scope or [])
    for role in args.role or []:
        scopes |= ROLES[role]
    if not scopes:
        print("error: give the key a --role or at least one --scope", file=sys.stderr)
        return 2
    try:
        key, info = _keys(args).create(args.name, scopes, args.stream, expires, args.role or [])
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


def _users(args: argparse.Namespace) -> Any:
    from control.db import control_sessions
    from control.users import Users

    return Users(control_sessions(_settings(args)))


def _password(args: argparse.Namespace) -> str | None:
    """From standard input with --password-stdin (scripts), else asked twice on the terminal."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password (12 characters or more): ")
    if getpass.getpass("again: ") != first:
        print("error: the two passwords differ", file=sys.stderr)
        return None
    return first


def cmd_users_create(args: argparse.Namespace) -> int:
    roles = ["admin"] if args.action == "create-admin" else (args.role or [])
    if not roles:
        print("error: give the user at least one --role", file=sys.stderr)
        return 2
    password = _password(args)
    if password is None:
        return 2
    try:
        user = _users(args).create(args.username, password, roles)
    except RiverbedError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    print(f"created {user.username} ({', '.join(user.roles)}); log in at POST /v1/auth/login")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    for user in _users(args).list():
        state = "disabled" if user.disabled else "active"
        seen = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
        print(f"{user.username}  {state:8}  roles={','.join(user.roles)}  last login={seen}")
    return 0


def cmd_users_set(args: argparse.Namespace) -> int:
    disabled = {"disable": True, "enable": False}.get(args.action)
    try:
        user = _users(args).update(args.username, roles=args.role, disabled=disabled)
    except RiverbedError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 2
    state = "disabled" if user.disabled else "active"
    print(f"{user.username}: {state}, roles {', '.join(user.roles)}")
    return 0


def _users_parser(commands: Any) -> None:
    users = commands.add_parser(
        "users",
        help="create the first admin, manage users",
        description="People who log in (POST /v1/auth/login): argon2id passwords, roles. "
        "Registration is admin-only.",
    )
    users.add_argument("--data-dir", help="the data dir whose control.db holds the users")
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("create-admin", "create an admin"), ("create", "create a user")):
        create = actions.add_parser(name, help=text)
        create.add_argument("--username", required=True)
        create.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        if name == "create":
            create.add_argument("--role", action="append", choices=sorted(ROLES))
        create.set_defaults(func=cmd_users_create)
    actions.add_parser("list", help="list users").set_defaults(func=cmd_users_list)
    for name, text in (("disable", "disable (and sign out) a user"), ("enable", "enable a user")):
        change = actions.add_parser(name, help=text)
        change.add_argument("username")
        change.set_defaults(func=cmd_users_set, role=None)
    roles = actions.add_parser("set-roles", help="replace a user's roles")
    roles.add_argument("username")
    roles.add_argument("--role", action="append", required=True, choices=sorted(ROLES))
    roles.set_defaults(func=cmd_users_set)


def add_access_parsers(commands: Any) -> None:
    _keys_parser(commands)
    _users_parser(commands)
