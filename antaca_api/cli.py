"""The `antaca` command: serve, migrate, ledger verify."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvloop

from antaca_auth.database import (
    EMBEDDED_DATABASE,
    configured_server,
    ensure_database,
    with_database,
)


def _database(dsn: str, embedded: bool) -> str:
    """The application database: the URL's own, or `antaca` on the embedded server."""
    if not embedded:
        return dsn
    asyncio.run(ensure_database(dsn, EMBEDDED_DATABASE))
    return with_database(dsn, EMBEDDED_DATABASE)


def cmd_serve(args: argparse.Namespace) -> int:
    from antaca_api.server import serve
    from antaca_api.settings import Settings, SettingsRefused

    try:
        settings = Settings.from_env()
    except SettingsRefused as exc:
        print(f"antaca serve: {exc}", file=sys.stderr)
        return 2
    with configured_server() as (server_dsn, embedded):
        dsn = _database(server_dsn, embedded)
        if embedded:
            print("using the embedded PostgreSQL (set ANTACA_DATABASE_URL to use another server)", flush=True)
        uvloop.run(serve(dsn, settings))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from antaca_auth.migrations import migrate

    with configured_server() as (server_dsn, embedded):
        applied = asyncio.run(migrate(_database(server_dsn, embedded)))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    import asyncpg

    from antaca_auth.migrations import migrate
    from antaca_auth.verify import verify_ledger

    async def run(dsn: str) -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return await verify_ledger(conn)
        finally:
            await conn.close()

    with configured_server() as (server_dsn, embedded):
        dsn = _database(server_dsn, embedded)
        asyncio.run(migrate(dsn))  # a database is verified at the schema this code knows
        problems = asyncio.run(run(dsn))
    for line in problems:
        print(line)
    if problems:
        print(f"ledger verify: {len(problems)} difference(s)", file=sys.stderr)
        return 1
    print("ledger verify: clean")
    return 0


def cmd_admin_create_user(args: argparse.Namespace) -> int:
    import getpass
    import os

    import asyncpg

    from antaca_api.admins import create_admin_user
    from antaca_api.domain_errors import DomainError
    from antaca_api.errors import ApiError
    from antaca_api.routing import Role
    from antaca_auth.migrations import migrate

    password = os.environ.get("ANTACA_ADMIN_PASSWORD")
    if password is None:
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("Password: ")

    async def run(dsn: str) -> str:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            return str(await create_admin_user(conn, args.email, password, Role(args.role)))
        finally:
            await conn.close()

    with configured_server() as (server_dsn, embedded):
        try:
            admin_id = asyncio.run(run(_database(server_dsn, embedded)))
        except (ApiError, DomainError) as exc:
            print(f"antaca admin create-user: {exc.message}", file=sys.stderr)
            return 1
    print(f"created {args.role} {args.email} ({admin_id})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="antaca", description="Antaca card management system")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="migrate and run the service").set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply pending SQL migrations").set_defaults(func=cmd_migrate)
    ledger = sub.add_parser("ledger", help="ledger maintenance").add_subparsers(dest="ledger_command", required=True)
    ledger.add_parser("verify", help="recompute balances from transfers").set_defaults(func=cmd_ledger_verify)
    admin = sub.add_parser("admin", help="administrators").add_subparsers(dest="admin_command", required=True)
    create = admin.add_parser("create-user", help="create an administrator (the first Admin, typically)")
    create.add_argument("--email", required=True)
    create.add_argument("--role", choices=["ADMIN", "MANAGER", "EMPLOYEE"], default="ADMIN")
    create.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (else ANTACA_ADMIN_PASSWORD, else a prompt)")
    create.set_defaults(func=cmd_admin_create_user)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its start-up chatter is not ours
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
