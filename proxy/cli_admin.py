"""``switchyard migrate`` and ``switchyard admin ...``: set-up without a running server.

They open the configured state store directly (the config's ``state:`` section) and
go through the same ``AdminService`` as the HTTP API, so the same checks and audit
entries apply; the actor is ``cli:<login name>``. The first admin key of a new
installation is made this way. With ``state.redis_url`` set, a change is broadcast as
the HTTP API broadcasts it, and running servers drop the key at once; without Redis
they learn of it when their key cache entry runs out (``state.key_cache_ttl_s``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from proxy.errors import SwitchyardError
from proxy.schemas.admin import KeyCreate, TeamCreate
from proxy.schemas.base import validated
from proxy.settings import Settings, load_settings
from proxy.state import migrate, open_state, resolve_url
from proxy.state.channels import scoped_channel
from proxy.state.config import StateConfig
from proxy.state.records import DEFAULT_TEAM_ID, ApiKey
from proxy.tenancy.admin import AdminService
from proxy.tenancy.keys import CHANNEL


def _state_config(settings: Settings) -> StateConfig:
    return settings.state


@asynccontextmanager
async def _opened(settings: Settings) -> Any:
    store = await open_state(
        _state_config(settings), data_dir=settings.server.data_dir, base_dir=settings.base_dir
    )
    try:
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def _broadcaster(settings: Settings) -> Any:
    """What tells running servers that a key changed: Redis pub/sub when configured."""
    if not settings.state.redis_url:
        yield None
        return
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.from_url(settings.state.redis_url)

    async def announce(what: str) -> None:
        await client.publish(scoped_channel(CHANNEL, client), what)

    try:
        yield announce
    finally:
        await client.aclose()


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _run(args: argparse.Namespace, work: Callable[[AdminService], Awaitable[int]]) -> int:
    settings = load_settings(args.config)

    async def go() -> int:
        async with _opened(settings) as store, _broadcaster(settings) as announce:
            return await work(AdminService(store, on_key_change=announce))

    try:
        return asyncio.run(go())
    except SwitchyardError as exc:
        where = f" ({exc.param})" if exc.param else ""
        print(f"switchyard: {exc.message}{where}", file=sys.stderr)
        return 1


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    given = {
        "rpm_limit": args.rpm,
        "tpm_limit": args.tpm,
        "max_budget_usd": args.budget,
        "budget_period": args.period,
        "allowed_models": args.models.split(",") if args.models else None,
    }
    return {k: v for k, v in given.items() if v is not None}


def _migrate(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    url = resolve_url(
        _state_config(settings).database,
        data_dir=settings.server.data_dir,
        base_dir=settings.base_dir,
    )
    applied = asyncio.run(migrate(url))
    for revision in applied:
        print(f"applied {revision}")
    if not applied:
        print("the database is up to date")
    return 0


def _create_team(args: argparse.Namespace) -> int:
    async def work(service: AdminService) -> int:
        body = validated({"name": args.name, **_limits(args)}, TeamCreate)
        team = await service.create_team(_actor(), body)
        print(f"team {team.id} ({team.name})")
        return 0

    return _run(args, work)


def _create_key(args: argparse.Namespace) -> int:
    async def work(service: AdminService) -> int:
        team_id = DEFAULT_TEAM_ID
        if args.team and args.team != DEFAULT_TEAM_ID:
            team_id = (await service.find_team(args.team)).id
        fields = {"name": args.name, "team_id": team_id, "role": args.role, **_limits(args)}
        if args.parallel is not None:
            fields["max_parallel"] = args.parallel
        if args.expires_at is not None:
            fields["expires_at"] = args.expires_at
        key, secret = await service.create_key(_actor(), validated(fields, KeyCreate))
        print(f"key {key.id} ({key.name}, team {key.team_id}, role {key.role})")
        print(secret)
        print("The secret is shown only this once: store it now.", file=sys.stderr)
        return 0

    return _run(args, work)


def _status(key: ApiKey, now: float) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def _list_keys(args: argparse.Namespace) -> int:
    async def work(service: AdminService) -> int:
        team_id = (await service.find_team(args.team)).id if args.team else None
        keys = await service.list_keys(team_id, include_revoked=args.all)
        now = time.time()
        print("id\tname\tteam\trole\tprefix\tstatus\trpm\ttpm\tbudget_usd")
        for k in keys:
            row = (k.id, k.name, k.team_id, k.role, k.prefix, _status(k, now))
            limits = (k.rpm_limit, k.tpm_limit, k.max_budget_usd)
            print("\t".join([*row, *("-" if v is None else str(v) for v in limits)]))
        return 0

    return _run(args, work)


def _revoke_key(args: argparse.Namespace) -> int:
    async def work(service: AdminService) -> int:
        key = await service.revoke_key(_actor(), args.key_id)
        print(f"revoked {key.id} ({key.name})")
        return 0

    return _run(args, work)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (default: $SWITCHYARD_CONFIG)")


def _limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--budget", type=float, help="budget in USD per period")
    parser.add_argument("--period", choices=["day", "month"], help="budget period (month)")
    parser.add_argument("--models", help="allowed model globs, comma-separated")


def add_commands(commands: Any) -> None:
    """Add ``migrate`` and ``admin`` to the ``switchyard`` command's sub-commands."""
    mig = commands.add_parser("migrate", help="apply the state database's migrations")
    _config_option(mig)
    mig.set_defaults(run=_migrate)
    admin = commands.add_parser("admin", help="teams and virtual keys, without a server")
    actions = admin.add_subparsers(dest="action", required=True)

    team = actions.add_parser("create-team", help="create a team")
    team.add_argument("--name", required=True)
    _limit_options(team)
    _config_option(team)
    team.set_defaults(run=_create_team)

    key = actions.add_parser("create-key", help="create a virtual key; prints its secret once")
    key.add_argument("--name", required=True)
    key.add_argument("--team", help=f"team id or name (default: {DEFAULT_TEAM_ID})")
    key.add_argument("--role", choices=["user", "admin"], default="user")
    key.add_argument("--parallel", type=int, help="requests running at once")
    key.add_argument("--expires-at", type=float, help="expiry, Unix seconds")
    _limit_options(key)
    _config_option(key)
    key.set_defaults(run=_create_key)

    listing = actions.add_parser("list-keys", help="list keys (never their secrets)")
    listing.add_argument("--team", help="team id or name")
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    _config_option(listing)
    listing.set_defaults(run=_list_keys)

    revoke = actions.add_parser("revoke-key", help="revoke a key at once")
    revoke.add_argument("key_id")
    _config_option(revoke)
    revoke.set_defaults(run=_revoke_key)
