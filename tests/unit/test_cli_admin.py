"""``switchyard migrate`` and ``switchyard admin ...`` against a real store (SQLite file
and PostgreSQL), through ``proxy.cli.main`` as the shell runs it."""

from __future__ import annotations

import asyncio
import getpass
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import main
from proxy.state import open_state
from proxy.state.config import StateConfig
from proxy.tenancy.secrets import hash_secret

KEY_LINE = re.compile(r"^key (key_[0-9a-f]+) \(", re.M)
SECRET_LINE = re.compile(r"^(sk-sy-\S+)$", re.M)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def config(tmp_path: Path, database: str) -> str:
    path = tmp_path / "switchyard.yaml"
    body = {"server": {"data_dir": str(tmp_path / "data")}, "state": {"database": database}}
    path.write_text(yaml.safe_dump(body))
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def in_store(config_path: str, database: str, work: Any) -> Any:
    async def go() -> Any:
        store = await open_state(
            StateConfig(database=database),
            data_dir=str(Path(config_path).parent / "data"),
            base_dir=str(Path(config_path).parent),
        )
        try:
            return await work(store)
        finally:
            await store.aclose()

    return asyncio.run(go())


def test_migrate_applies_then_reports_up_to_date(
    capsys: pytest.CaptureFixture[str], config: str
) -> None:
    code, out, _ = run(capsys, "migrate", "--config", config)
    assert code == 0
    assert re.search(r"^applied \S+", out, re.M)
    code, again, _ = run(capsys, "migrate", "--config", config)
    assert (code, again.strip()) == (0, "the database is up to date")


def test_create_key_prints_its_secret_once(
    capsys: pytest.CaptureFixture[str], config: str, database: str
) -> None:
    code, out, _ = run(capsys, "admin", "create-team", "--name", "research", "--config", config)
    assert code == 0 and re.match(r"team team_[0-9a-f]+ \(research\)", out)
    code, out, err = run(
        capsys,
        "admin", "create-key", "--name", "ci", "--team", "research", "--role", "admin",
        "--rpm", "30", "--budget", "5", "--period", "day", "--config", config,
    )  # fmt: skip
    assert code == 0, err
    key_id = KEY_LINE.search(out)[1]  # type: ignore[index]
    secret = SECRET_LINE.search(out)[1]  # type: ignore[index]
    assert "shown only this once" in err

    async def check(store: Any) -> Any:
        key = await store.keys.find_by_hash(hash_secret(secret), 0.0)
        entries, _ = await store.audit.list(10, None, target=key_id)
        return key, entries

    key, entries = in_store(config, database, check)
    assert (key.id, key.name, key.role, key.rpm_limit) == (key_id, "ci", "admin", 30)
    assert (key.max_budget_usd, key.budget_period) == (5.0, "day")
    assert entries[0].actor == f"cli:{getpass.getuser()}"
    assert entries[0].action == "key.create"

    code, listing, _ = run(capsys, "admin", "list-keys", "--team", "research", "--config", config)
    assert code == 0
    assert key_id in listing and secret[:12] in listing
    assert secret not in listing


def test_revoke_key_and_list_revoked(capsys: pytest.CaptureFixture[str], config: str) -> None:
    _, out, _ = run(capsys, "admin", "create-key", "--name", "temp", "--config", config)
    key_id = KEY_LINE.search(out)[1]  # type: ignore[index]
    code, out, _ = run(capsys, "admin", "revoke-key", key_id, "--config", config)
    assert (code, out.strip()) == (0, f"revoked {key_id} (temp)")
    _, live, _ = run(capsys, "admin", "list-keys", "--config", config)
    assert key_id not in live
    _, every, _ = run(capsys, "admin", "list-keys", "--all", "--config", config)
    (row,) = [line for line in every.splitlines() if line.startswith(key_id)]
    assert row.split("\t")[5] == "revoked"


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str], config: str) -> None:
    code, _, err = run(
        capsys, "admin", "create-key", "--name", "x", "--team", "nowhere", "--config", config
    )
    assert code == 1
    assert err.strip() == "switchyard: No team with id or name 'nowhere'. (team)"
    code, _, err = run(capsys, "admin", "revoke-key", "key_missing", "--config", config)
    assert (code, err.strip()) == (1, "switchyard: No key with id 'key_missing'. (key_id)")
    code, _, err = run(
        capsys, "admin", "create-key", "--name", "x", "--rpm", "0", "--config", config
    )
    assert code == 1 and "(rpm_limit)" in err
    run(capsys, "admin", "create-team", "--name", "dup", "--config", config)
    code, _, err = run(capsys, "admin", "create-team", "--name", "dup", "--config", config)
    assert (code, err.strip()) == (1, "switchyard: A team named 'dup' already exists. (name)")


def test_with_redis_a_revocation_is_broadcast_to_running_servers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, redis_url: str
) -> None:
    import redis as redis_sync

    from proxy.state.channels import scoped_channel
    from proxy.tenancy.keys import CHANNEL

    path = tmp_path / "redis.yaml"
    body = {
        "server": {"data_dir": str(tmp_path / "data")},
        "state": {"database": f"sqlite:///{tmp_path / 'r.sqlite3'}", "redis_url": redis_url},
    }
    path.write_text(yaml.safe_dump(body))
    _, out, _ = run(capsys, "admin", "create-key", "--name", "temp", "--config", str(path))
    key_id = KEY_LINE.search(out)[1]  # type: ignore[index]
    client = redis_sync.Redis.from_url(redis_url)
    listener = client.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(scoped_channel(CHANNEL, client))
    assert listener.get_message(timeout=1) is None  # the subscription is in place
    try:
        assert run(capsys, "admin", "revoke-key", key_id, "--config", str(path))[0] == 0
        message = listener.get_message(timeout=5)
    finally:
        listener.close()
    assert message is not None and message["data"] == key_id.encode()
