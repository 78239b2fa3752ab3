"""What the e2e tenancy modules share: a gateway config with a master key, the admin API
as a user drives it (plain HTTP), SDK clients, and polling for changes that take effect
"within" a bound (revocation, grace, expiry)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai

from tests.support.servers import Addressable

MASTER_KEY = "sk-master-for-tenancy-tests"
UPSTREAM_KEY = "sk-upstream-secret"


def chat_model(name: str, upstream: str, base_url: str, **extra: Any) -> dict[str, Any]:
    """An ``openai``-adapter deployment on the fake upstream."""
    return {
        "name": name,
        "adapter": "openai",
        "model": upstream,
        "base_url": base_url,
        "api_key": UPSTREAM_KEY,
        "timeout_s": 5,
        **extra,
    }


def tenancy_config(
    data_dir: Path,
    models: list[dict[str, Any]],
    *,
    state: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """A gateway with the master key, its own data dir (fresh SQLite unless ``state``
    names a database), and usage written every 0.2 s."""
    return {
        "server": {"master_key": MASTER_KEY, "data_dir": str(data_dir), **(server or {})},
        "state": {"usage_flush_interval_s": 0.2, **(state or {})},
        "models": models,
        **sections,
    }


def sdk(gateway: Addressable, key: str, **options: Any) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=15, **options
    )


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text)
    return response.json()


class Admin:
    """The admin API (``/v1/switchyard/admin``) with some admin credential."""

    def __init__(self, gateway: Addressable, key: str = MASTER_KEY) -> None:
        self.http = httpx.Client(
            base_url=f"{gateway.url}/v1/switchyard/admin",
            headers={"Authorization": f"Bearer {key}"},
            timeout=15,
        )

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def team(self, name: str, **limits: Any) -> dict[str, Any]:
        return ok(self.http.post("/teams", json={"name": name, **limits}))  # type: ignore[no-any-return]

    def key(self, team_id: str, name: str = "k", **fields: Any) -> dict[str, Any]:
        """A new key (its ``key`` field is the secret)."""
        body = {"name": name, "team_id": team_id, **fields}
        return ok(self.http.post("/keys", json=body))  # type: ignore[no-any-return]

    def revoke(self, key_id: str) -> dict[str, Any]:
        return ok(self.http.delete(f"/keys/{key_id}"))  # type: ignore[no-any-return]

    def rotate(self, key_id: str, grace_s: float) -> dict[str, Any]:
        return ok(self.http.post(f"/keys/{key_id}/rotate", json={"grace_s": grace_s}))  # type: ignore[no-any-return]

    def usage(self, **query: str) -> list[dict[str, Any]]:
        return ok(self.http.get("/usage", params=query))["data"]  # type: ignore[no-any-return]

    def audit(self) -> httpx.Response:
        return self.http.get("/audit")


def me(gateway: Addressable, key: str) -> dict[str, Any]:
    response = httpx.get(
        f"{gateway.url}/v1/switchyard/me", headers={"Authorization": f"Bearer {key}"}, timeout=15
    )
    return ok(response)  # type: ignore[no-any-return]


def ask(client: openai.OpenAI, text: str = "hi", model: str = "gpt-test", **kw: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **kw
    )


def refused_within(call: Callable[[], Any], error: type[Exception], limit_s: float) -> float:
    """Call ``call`` until it raises ``error`` (up to ``limit_s``); the seconds it took.

    The caller asserts the result is under the bound; a call that never raises fails
    here with what it kept returning."""
    began = time.monotonic()
    while True:
        try:
            call()
        except error:
            return time.monotonic() - began
        if time.monotonic() - began > limit_s:
            raise AssertionError(f"still accepted after {limit_s} s")
        time.sleep(0.02)
