"""Live configuration reload through ``POST /v1/switchyard/admin/reload``.

The gateway runs from a real config file (as ``switchyard serve`` does); each test
rewrites the file and asks for a reload. New requests see the new models, prices,
limits and personas; a stream that began before the reload finishes on the upstream it
began with; an invalid file changes nothing; what cannot change live is reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.settings import load_settings
from tests.e2e.conftest import CLIENT_KEY, model_entry, sdk
from tests.support.fake_openai import FakeOpenAI, Fault, rate_limited, running_fake, wait_until
from tests.support.servers import RunningServer, serve_gateway
from tests.support.streams import BackgroundStream

MASTER = "sk-reload-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
ASK = [{"role": "user", "content": "hi"}]
RELOAD = "/v1/switchyard/admin/reload"


def config(tmp_path: Path, models: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    server = {"data_dir": str(tmp_path / "data"), "master_key": MASTER, "api_keys": [CLIENT_KEY]}
    return {"server": server, "defaults": False, "models": models, **extra}


def write(tmp_path: Path, content: dict[str, Any] | str) -> Path:
    path = tmp_path / "switchyard.yaml"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


@contextmanager
def gateway_from_file(path: Path) -> Iterator[RunningServer]:
    with serve_gateway(load_settings(path)) as running:
        yield running


def state_of(server: RunningServer) -> Any:
    return server.app.app.state.switchyard


def reload(server: RunningServer, **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{RELOAD}", headers=ADMIN, timeout=30, **kw)


def upstream_models(fake: FakeOpenAI) -> list[str]:
    return [r.body["model"] for r in fake.received("/v1/chat/completions")]


def test_new_requests_use_the_new_upstream_while_a_running_stream_ends_on_the_old(
    tmp_path: Path,
) -> None:
    hold = Fault("hold", after=2)
    with running_fake({"upstream-a": hold}) as (fake_a, url_a), running_fake() as (fake_b, url_b):
        kept = model_entry("kept", "upstream-k", url_b)
        write(tmp_path, config(tmp_path, [model_entry("m", "upstream-a", url_a), kept]))
        with gateway_from_file(tmp_path / "switchyard.yaml") as server, sdk(server) as client:
            kept_adapter = state_of(server).router.deployments["kept"][0].adapter
            reader = BackgroundStream(client, "m", ASK)
            assert wait_until(lambda: bool(reader.pieces), timeout=15)

            moved = model_entry("m", "upstream-b", url_b)
            added = model_entry("new", "upstream-n", url_b)
            write(tmp_path, config(tmp_path, [moved, kept, added]))
            answer = reload(server)
            assert answer.status_code == 200, answer.text
            report = answer.json()
            assert report["models"] == {"added": ["new"], "removed": [], "changed": ["m"]}
            assert report["generation"] == 2 and report["needs_restart"] == []

            reply = client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            assert reply.choices[0].message.content == "Hello! You said: hi"
            assert upstream_models(fake_b) == ["upstream-b"]
            assert "new" in [m.id for m in client.models.list()]
            # The unchanged entry kept its adapter: nothing was rebuilt for it.
            assert state_of(server).router.deployments["kept"][0].adapter is kept_adapter

            hold.release.set()
            assert reader.join() == "Hello! You said: hi"
            assert upstream_models(fake_a) == ["upstream-a"]


def test_an_invalid_file_is_refused_with_its_error_and_the_running_config_stays(
    tmp_path: Path,
) -> None:
    with running_fake() as (fake, url):
        good = config(tmp_path, [model_entry("m", "upstream-a", url)])
        write(tmp_path, good)
        with gateway_from_file(tmp_path / "switchyard.yaml") as server, sdk(server) as client:
            broken = config(tmp_path, [{"name": "m", "adapter": "nope"}])
            for content, said in [
                (broken, "unknown adapter 'nope'"),
                ("models: [unclosed", "not valid YAML"),
                (config(tmp_path, [model_entry("m", "u", url, timeout_s="x")]), "timeout_s"),
            ]:
                write(tmp_path, content)
                answer = reload(server)
                assert answer.status_code == 400, answer.text
                error = answer.json()["error"]
                assert said in error["message"] and "not reloaded" in error["message"]
                client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            assert upstream_models(fake) == ["upstream-a"] * 3
            assert state_of(server).generations.current.number == 1


def _costs(server: RunningServer) -> list[tuple[int, int, float]]:
    rows = httpx.get(
        f"{server.url}/v1/switchyard/admin/usage/requests", headers=ADMIN, timeout=30
    ).json()["data"]
    return [(r["prompt_tokens"], r["completion_tokens"], r["cost_usd"]) for r in reversed(rows)]


def test_a_price_change_is_what_new_requests_cost(tmp_path: Path) -> None:
    before = {"input_per_1m": 1000.0, "output_per_1m": 2000.0}
    after = {"input_per_1m": 3000.0, "output_per_1m": 7000.0}
    with running_fake() as (_, url):
        write(tmp_path, config(tmp_path, [model_entry("m", "u", url, price=before)]))
        with gateway_from_file(tmp_path / "switchyard.yaml") as server, sdk(server) as client:
            client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            write(tmp_path, config(tmp_path, [model_entry("m", "u", url, price=after)]))
            assert reload(server).json()["models"]["changed"] == ["m"]
            client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            (p1, c1, cost1), (p2, c2, cost2) = _costs(server)
            audit = httpx.get(
                f"{server.url}/v1/switchyard/admin/audit",
                params={"target": "config"},
                headers=ADMIN,
                timeout=30,
            ).json()["data"]
    assert (p1, c1) == (p2, c2) and p1 > 0 and c1 > 0
    assert cost1 == pytest.approx((p1 * 1000 + c1 * 2000) / 1e6)
    assert cost2 == pytest.approx((p2 * 3000 + c2 * 7000) / 1e6)
    (entry,) = audit
    assert (entry["action"], entry["actor"]) == ("config.reload", "master")
    assert entry["details"]["generation"] == 2
    assert entry["details"]["models"]["changed"] == ["m"]


def test_a_model_s_limits_change_for_new_requests(tmp_path: Path) -> None:
    """Its capabilities and its upstream timeout, as entries in the file say."""
    slow = Fault("delay", seconds=1.0)
    with running_fake({"slow": slow}) as (_, url):
        models = [model_entry("m", "u", url), model_entry("s", "slow", url, timeout_s=30)]
        write(tmp_path, config(tmp_path, models))
        with gateway_from_file(tmp_path / "switchyard.yaml") as server, sdk(server) as client:
            assert client.embeddings.create(model="m", input="x").data
            assert client.chat.completions.create(model="s", messages=ASK).choices  # type: ignore[arg-type]
            limited = [
                model_entry("m", "u", url, capabilities=["chat"]),
                model_entry("s", "slow", url, timeout_s=0.2),
            ]
            write(tmp_path, config(tmp_path, limited))
            assert reload(server).json()["models"]["changed"] == ["m", "s"]
            with pytest.raises(openai.BadRequestError, match="does not support embeddings"):
                client.embeddings.create(model="m", input="x")
            with pytest.raises(openai.APIStatusError) as timed_out:
                client.chat.completions.create(model="s", messages=ASK)  # type: ignore[arg-type]
            assert timed_out.value.status_code == 504


def test_a_persona_change_applies_to_new_requests(tmp_path: Path) -> None:
    personas = tmp_path / "personas"
    personas.mkdir()

    def persona(prompt: str) -> None:
        text = json.dumps({"name": "guide", "system_prompt": prompt, "model": "m"})
        (personas / "guide.yaml").write_text(text, "utf-8")

    persona("You are the first guide.")
    with running_fake() as (fake, url):
        cfg = config(tmp_path, [model_entry("m", "u", url)], personas={"dir": str(personas)})
        write(tmp_path, cfg)
        with gateway_from_file(tmp_path / "switchyard.yaml") as server, sdk(server) as client:
            client.chat.completions.create(model="persona:guide", messages=ASK)  # type: ignore[arg-type]
            persona("You are the second guide.")
            (personas / "extra.yaml").write_text(
                json.dumps({"name": "extra", "system_prompt": "x", "model": "m"}), "utf-8"
            )
            assert reload(server).status_code == 200
            client.chat.completions.create(model="persona:guide", messages=ASK)  # type: ignore[arg-type]
            assert "persona:extra" in [m.id for m in client.models.list()]
        systems = [r.body["messages"][0]["content"] for r in fake.received("/v1/chat/completions")]
    assert systems == ["You are the first guide.", "You are the second guide."]


def test_settings_that_need_a_restart_are_reported_and_keep_their_running_value(
    tmp_path: Path,
) -> None:
    with running_fake() as (_, url):
        cfg = config(tmp_path, [model_entry("m", "u", url)])
        write(tmp_path, cfg)
        with gateway_from_file(tmp_path / "switchyard.yaml") as server:
            cfg["server"] = {**cfg["server"], "max_body_mb": 0.001, "port": 1}
            cfg["state"] = {"key_cache_ttl_s": 30}
            write(tmp_path, cfg)
            report = reload(server).json()
            assert report["needs_restart"] == [
                "server.max_body_mb",
                "server.port",
                "state.key_cache_ttl_s",
            ]
            big = {"model": "m", "messages": [{"role": "user", "content": "x" * 20_000}]}
            answer = httpx.post(
                f"{server.url}/v1/chat/completions",
                json=big,
                headers={"Authorization": f"Bearer {CLIENT_KEY}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text  # 1 KiB would be a 413


def test_reload_is_for_admins_only(tmp_path: Path) -> None:
    write(tmp_path, config(tmp_path, []))
    with gateway_from_file(tmp_path / "switchyard.yaml") as server:
        user = httpx.post(
            f"{server.url}{RELOAD}", headers={"Authorization": f"Bearer {CLIENT_KEY}"}
        )
        assert user.status_code == 403
        assert httpx.post(f"{server.url}{RELOAD}").status_code == 401
        assert state_of(server).generations.current.number == 1


def test_broadcast_without_redis_is_a_400_naming_it(tmp_path: Path) -> None:
    write(tmp_path, config(tmp_path, []))
    with gateway_from_file(tmp_path / "switchyard.yaml") as server:
        for kw in ({"params": {"broadcast": "true"}}, {"json": {"broadcast": True}}):
            answer = reload(server, **kw)
            assert answer.status_code == 400 and answer.json()["error"]["param"] == "broadcast"
        assert state_of(server).generations.current.number == 1


def test_a_broadcast_reload_reaches_the_other_replica_through_redis(
    tmp_path: Path, fresh_redis_url: str
) -> None:
    with running_fake() as (fake_a, url_a), running_fake() as (fake_b, url_b):
        files = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            cfg = config(
                tmp_path / name,
                [model_entry("m", "upstream-a", url_a)],
                state={"redis_url": fresh_redis_url},
            )
            files.append(write(tmp_path / name, cfg))
        with gateway_from_file(files[0]) as one, gateway_from_file(files[1]) as two:
            for path in files:
                changed = json.loads(path.read_text())
                changed["models"] = [model_entry("m", "upstream-b", url_b)]
                path.write_text(json.dumps(changed))
            answer = reload(one, json={"broadcast": True})
            assert answer.status_code == 200 and answer.json()["broadcast"] is True
            assert wait_until(lambda: state_of(two).generations.current.number == 2, 10)
            with sdk(two) as client:
                client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            # The replica that broadcast did not reload a second time on its own message.
            assert state_of(one).generations.current.number == 2
        assert upstream_models(fake_b) == ["upstream-b"]
        assert fake_a.received("/v1/chat/completions") == []


def _cache_header(client: openai.OpenAI, model: str) -> str | None:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=ASK)  # type: ignore[arg-type]
    return raw.headers.get("x-switchyard-cache")


def test_the_response_cache_outlives_a_reload_and_follows_the_new_models(tmp_path: Path) -> None:
    cached = {"cache": {"ttl_s": 300}}
    with running_fake() as (fake, url):
        entries = [model_entry("m", "u", url, **cached), model_entry("n", "u", url)]
        write(tmp_path, config(tmp_path, entries))
        with gateway_from_file(tmp_path / "switchyard.yaml") as server, sdk(server) as client:
            assert _cache_header(client, "m") == "miss"
            assert _cache_header(client, "n") is None  # no cache for n yet
            price = {"price": {"input_per_1m": 1.0, "output_per_1m": 1.0}}
            entries = [model_entry("m", "u", url, **cached), model_entry("n", "u", url, **cached)]
            entries[0].update(price)  # m changes (a new adapter), its cache key does not
            write(tmp_path, config(tmp_path, entries))
            assert reload(server).json()["models"]["changed"] == ["m", "n"]
            assert _cache_header(client, "m") == "hit"  # stored before the reload
            assert _cache_header(client, "n") == "miss"
            assert _cache_header(client, "n") == "hit"
    assert len(fake.received("/v1/chat/completions")) == 3  # m once, n twice before/after


def test_cooldowns_shared_through_redis_reach_the_deployments_of_a_new_generation(
    tmp_path: Path, fresh_redis_url: str
) -> None:
    """Replica two reloads with a changed entry for m (a new adapter and deployment, the
    same upstream); a 429 seen by replica one then makes two skip its new deployment."""
    limited = rate_limited(retry_after="30")
    with running_fake() as (fake, url):
        files = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            cfg = config(
                tmp_path / name, [model_entry("m", "u", url)], state={"redis_url": fresh_redis_url}
            )
            files.append(write(tmp_path / name, cfg))
        with gateway_from_file(files[0]) as one, gateway_from_file(files[1]) as two:
            (old,) = state_of(two).generations.current.router.deployments["m"]
            changed = json.loads(files[1].read_text())
            changed["models"] = [model_entry("m", "u", url, timeout_s=20)]
            files[1].write_text(json.dumps(changed))
            assert reload(two).json()["models"]["changed"] == ["m"]
            fake.faults["u"] = limited
            with sdk(one) as client, pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            (deployment,) = state_of(two).generations.current.router.deployments["m"]
            assert deployment is not old
            assert wait_until(lambda: deployment.cooldown_until > 0, 5)
            fake.faults.clear()
            with sdk(two) as client, pytest.raises(openai.APIStatusError) as refused:
                client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            assert refused.value.status_code == 429
    assert len(fake.received("/v1/chat/completions")) == 1  # only one's request went out


def test_a_reload_that_fails_halfway_leaves_the_kept_extensions_on_the_running_router(
    tmp_path: Path,
) -> None:
    """The new file changes m (a new adapter) and names a search provider that is not
    installed, which fails only when the tools extension is built, after the sessions
    extension (unchanged, so kept) was lent the new generation's services. It must still
    serve the running router: a session turn afterwards reaches the running upstream."""
    with running_fake() as (fake_a, url_a), running_fake() as (fake_b, url_b):
        write(tmp_path, config(tmp_path, [model_entry("m", "upstream-a", url_a)]))
        with gateway_from_file(tmp_path / "switchyard.yaml") as server, sdk(server) as client:
            sessions = state_of(server).generations.current.extensions["session"]
            running_router = sessions.services.router
            tools = {"web_search": {"provider": "no-such-provider", "url": "http://127.0.0.1:9"}}
            write(tmp_path, config(tmp_path, [model_entry("m", "upstream-b", url_b)], tools=tools))
            answer = reload(server)
            assert answer.status_code == 400, answer.text
            assert "no-such-provider" in answer.json()["error"]["message"]
            assert sessions.services.router is running_router
            client.chat.completions.create(
                model="m",
                messages=ASK,  # type: ignore[arg-type]
                extra_headers={"X-Switchyard-Session": "after-a-failed-reload"},
            )
    assert upstream_models(fake_a) == ["upstream-a"]
    assert fake_b.received("/v1/chat/completions") == []


def test_a_deployment_made_by_a_reload_starts_with_the_cooldown_already_shared(
    tmp_path: Path, fresh_redis_url: str
) -> None:
    """One sees a 429 first; two then reloads with a changed entry for m. Its new
    deployment reads the cooldown stored in Redis instead of starting warm."""
    with running_fake({"u": rate_limited(retry_after="30")}) as (fake, url):
        files = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            cfg = config(
                tmp_path / name, [model_entry("m", "u", url)], state={"redis_url": fresh_redis_url}
            )
            files.append(write(tmp_path / name, cfg))
        with gateway_from_file(files[0]) as one, gateway_from_file(files[1]) as two:
            with sdk(one) as client, pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="m", messages=ASK)  # type: ignore[arg-type]
            (old,) = state_of(two).generations.current.router.deployments["m"]
            assert wait_until(lambda: old.cooldown_until > 0, 5)
            changed = json.loads(files[1].read_text())
            changed["models"] = [model_entry("m", "u", url, timeout_s=20)]
            files[1].write_text(json.dumps(changed))
            assert reload(two).json()["models"]["changed"] == ["m"]
            (new,) = state_of(two).generations.current.router.deployments["m"]
            assert new is not old and new.cooldown_until > 0
    assert len(fake.received("/v1/chat/completions")) == 1
