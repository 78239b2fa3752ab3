"""The router over real OpenAI adapters, with upstreams faked at the transport layer.

Each deployment's ``base_url`` has its own host (``http://a/v1``, ``http://b/v1``...);
one ``httpx.MockTransport`` plays all of them, and records which host each request
reached, so tests observe the router's choices the way an upstream would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from adapters.base import Adapter, CallStats, Capability, DeploymentConfig, RawJSON, Resources
from adapters.openai import OpenAIAdapter
from proxy.errors import (
    ClientDisconnected,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UnsupportedCapability,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from proxy.metrics import Metrics
from proxy.router import Deployment, Router
from proxy.schemas.base import Envelope, decode_request
from proxy.schemas.chat import ChatCompletionRequest
from proxy.schemas.embeddings import EmbeddingRequest
from proxy.settings import settings_from_mapping

Behaviour = Callable[[httpx.Request], Awaitable[httpx.Response]]
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


# ----------------------------------------------------------------------- upstream fakes


async def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"host": request.url.host, "usage": USAGE})


def status(code: int, headers: dict[str, str] | None = None) -> Behaviour:
    async def respond(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": f"{request.url.host} says {code}", "type": "x"}}
        return httpx.Response(code, json=body, headers=headers)

    return respond


def raising(exc: type[httpx.RequestError]) -> Behaviour:
    async def fail(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)

    return fail


def failing_once(then: Behaviour = ok, first: Behaviour | None = None) -> Behaviour:
    calls = 0

    async def respond(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return await (first or status(500))(request) if calls == 1 else await then(request)

    return respond


class ClosingStream(httpx.AsyncByteStream):
    """A streamed body that records being closed, optionally hanging after its parts."""

    def __init__(self, parts: list[bytes], *, hang: bool = False) -> None:
        self.parts = parts
        self.hang = hang
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for part in self.parts:
            yield part
        if self.hang:
            await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True


def sse(host: str, *, done: bool = True, extra: list[bytes] | None = None) -> list[bytes]:
    events = [
        b"data: " + json.dumps({"host": host, "choices": [{"delta": {"content": c}}]}).encode()
        for c in ("x", "y")
    ]
    parts = [e + b"\n\n" for e in events] + (extra or [])
    return [*parts, b"data: [DONE]\n\n"] if done else parts


def streaming(parts: Callable[[str], list[bytes]], *, hang: bool = False) -> Behaviour:
    async def respond(request: httpx.Request) -> httpx.Response:
        stream = ClosingStream(parts(request.url.host), hang=hang)
        Upstream.streams.append(stream)
        return httpx.Response(200, stream=stream, headers={"content-type": "text/event-stream"})

    return respond


class Upstream:
    """The MockTransport handler: a behaviour per host, and the hosts in call order."""

    streams: list[ClosingStream] = []

    def __init__(self, **behaviours: Behaviour) -> None:
        self.behaviours = behaviours
        self.hosts: list[str] = []
        Upstream.streams = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.hosts.append(host)
        return await self.behaviours[host](request)

    def count(self, host: str) -> int:
        return self.hosts.count(host)


# ---------------------------------------------------------------------------- set-up


def build_router(
    upstream: Upstream,
    models: dict[str, list[str]],
    *,
    fallbacks: dict[str, list[str]] | None = None,
    cooldown_s: float = 30.0,
    max_retry_after_s: float = 60.0,
) -> tuple[Router, Metrics]:
    """``models`` maps a model name to the hosts of its deployments."""
    entries = [
        {
            "name": name,
            "adapter": "openai",
            "model": f"{name}-on-{host}",
            "base_url": f"http://{host}/v1",
            "api_key": "sk-upstream",
            "fallbacks": (fallbacks or {}).get(name, []),
        }
        for name, hosts in models.items()
        for host in hosts
    ]
    settings = settings_from_mapping({"models": entries})
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    resources = Resources(settings=settings, http=http)
    deployments: dict[str, list[Deployment]] = {}
    for config in settings.models:
        adapter = OpenAIAdapter(config, resources)
        deployments.setdefault(config.name, []).append(Deployment(adapter))
    metrics = Metrics()
    router = Router(
        deployments,
        fallbacks or {},
        cooldown_s=cooldown_s,
        max_retry_after_s=max_retry_after_s,
        metrics=metrics,
    )
    return router, metrics


def envelope(model: str = "m", **fields: Any) -> Envelope[ChatCompletionRequest]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}
    return decode_request(json.dumps(body).encode(), ChatCompletionRequest)


async def chat(router: Router, model: str = "m", stats: CallStats | None = None) -> str:
    """One non-streamed chat call; returns the host that answered."""
    stats = stats or CallStats()
    request = envelope(model)
    result = await router.call(
        model, Capability.CHAT, lambda adapter: adapter.chat(request, stats), stats
    )
    assert isinstance(result, RawJSON)
    return str(json.loads(result.content)["host"])


async def open_chat_stream(
    router: Router, model: str = "m", stats: CallStats | None = None
) -> AsyncIterator[Any]:
    stats = stats or CallStats()
    request = envelope(model, stream=True)
    return await router.open_stream(
        model, Capability.CHAT, lambda adapter: adapter.chat_stream(request, stats), stats
    )


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------------ selection


async def test_requests_reach_the_upstream_with_its_model_id_and_key() -> None:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return await ok(request)

    router, _ = build_router(Upstream(a=record), {"m": ["a"]})
    stats = CallStats()

    assert await chat(router, stats=stats) == "a"
    assert json.loads(seen[0].content)["model"] == "m-on-a"
    assert seen[0].headers["authorization"] == "Bearer sk-upstream"
    assert str(seen[0].url) == "http://a/v1/chat/completions"
    assert (stats.prompt_tokens, stats.completion_tokens, stats.attempts) == (3, 2, 1)


async def test_least_in_flight_deployment_is_chosen() -> None:
    gates: list[tuple[str, asyncio.Event]] = []
    arrival = asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        gate = asyncio.Event()
        gates.append((request.url.host, gate))
        arrival.set()
        await gate.wait()
        return await ok(request)

    upstream = Upstream(a=held, b=held)
    router, _ = build_router(upstream, {"m": ["a", "b"]})

    async def arrived(count: int) -> None:
        async with asyncio.timeout(5):
            while len(gates) < count:
                arrival.clear()
                await arrival.wait()

    first = asyncio.create_task(chat(router))
    await arrived(1)
    second = asyncio.create_task(chat(router))
    await arrived(2)
    busy, idle = gates[0][0], gates[1][0]
    assert busy != idle  # the second request avoided the busy deployment
    gates[1][1].set()
    assert await second == idle
    third = asyncio.create_task(chat(router))
    await arrived(3)
    assert gates[2][0] == idle  # still the one with fewer requests in flight
    gates[0][1].set()
    gates[2][1].set()
    assert await first == busy
    assert await third == idle
    assert all(d.in_flight == 0 for d in router.deployments["m"])


async def test_load_is_spread_across_idle_deployments() -> None:
    upstream = Upstream(a=ok, b=ok)
    router, _ = build_router(upstream, {"m": ["a", "b"]})

    for _ in range(4):
        await chat(router)

    assert upstream.count("a") == upstream.count("b") == 2


async def test_unknown_model() -> None:
    router, _ = build_router(Upstream(a=ok), {"m": ["a"]})

    with pytest.raises(ModelNotFound) as caught:
        await chat(router, model="nope")
    assert caught.value.param == "model"
    assert caught.value.http_status == 404


class ChatOnly(Adapter):
    name = "chat-only"
    capabilities = frozenset({Capability.CHAT})


async def test_capability_the_adapter_lacks() -> None:
    config = DeploymentConfig(name="m", adapter="chat-only")
    async with httpx.AsyncClient() as http:
        adapter = ChatOnly(config, Resources(settings=settings_from_mapping({}), http=http))
    router = Router(
        {"m": [Deployment(adapter)]}, {}, cooldown_s=1, max_retry_after_s=1, metrics=Metrics()
    )

    request = decode_request(b'{"model": "m", "input": "x"}', EmbeddingRequest)
    with pytest.raises(UnsupportedCapability) as caught:
        await router.call(
            "m", Capability.EMBEDDINGS, lambda a: a.embed(request, CallStats()), CallStats()
        )
    assert caught.value.http_status == 400
    assert caught.value.param == "model"


# --------------------------------------------------------------------- retry and cooldown


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (status(500), UpstreamError),
        (status(503), UpstreamError),
        (status(429), RateLimited),
        (raising(httpx.ConnectError), UpstreamUnavailable),
        (raising(httpx.ReadTimeout), UpstreamTimeout),
        (raising(httpx.RemoteProtocolError), UpstreamUnavailable),
    ],
    ids=["500", "503", "429", "connect", "timeout", "protocol"],
)
async def test_retryable_failures_move_to_another_deployment(
    failure: Behaviour, error: type[Exception]
) -> None:
    upstream = Upstream(a=failure, b=ok)
    router, metrics = build_router(upstream, {"m": ["a", "b"]})
    attempts = []

    for _ in range(3):
        stats = CallStats()
        assert await chat(router, stats=stats) == "b"
        attempts.append(stats.attempts)

    # "a" failed once and was then cooled down behind "b".
    assert upstream.count("a") == 1
    assert sorted(attempts) == [1, 1, 2]
    labels = {"deployment": "openai:a/m-on-a", "kind": error.__name__}
    assert sample(metrics, "switchyard_upstream_errors_total", **labels) == 1
    assert (
        sample(metrics, "switchyard_deployment_cooldowns_total", deployment="openai:a/m-on-a") == 1
    )


async def test_upstream_4xx_is_not_retried_and_does_not_cool_down() -> None:
    upstream = Upstream(a=status(400), b=status(400))
    router, _ = build_router(upstream, {"m": ["a", "b"]})

    with pytest.raises(UpstreamRejected) as caught:
        await chat(router)

    assert len(upstream.hosts) == 1
    assert caught.value.http_status == 400
    assert caught.value.message.endswith("says 400")
    assert all(d.cooldown_until == 0 for d in router.deployments["m"])


async def test_when_every_deployment_fails_the_last_error_is_raised() -> None:
    upstream = Upstream(a=raising(httpx.ConnectError), b=raising(httpx.ConnectError))
    router, _ = build_router(upstream, {"m": ["a", "b"]})

    with pytest.raises(UpstreamUnavailable):
        await chat(router)
    assert sorted(upstream.hosts) == ["a", "b"]


async def test_cooling_deployments_are_still_tried_when_nothing_else_is_left() -> None:
    upstream = Upstream(a=failing_once())
    router, _ = build_router(upstream, {"m": ["a"]}, cooldown_s=30)

    with pytest.raises(UpstreamError):
        await chat(router)
    assert router.deployments["m"][0].cooldown_until > 0
    assert await chat(router) == "a"  # cooled, but the only choice: tried anyway


async def test_a_recovered_deployment_stays_behind_healthy_ones_during_its_cooldown() -> None:
    upstream = Upstream(a=failing_once(), b=ok)
    router, _ = build_router(upstream, {"m": ["a", "b"]}, cooldown_s=30)

    hosts = [await chat(router) for _ in range(4)]

    assert hosts == ["b"] * 4
    assert upstream.count("a") == 1


async def test_cooldown_expires() -> None:
    upstream = Upstream(a=failing_once(), b=ok)
    router, _ = build_router(upstream, {"m": ["a", "b"]}, cooldown_s=0.05)

    for _ in range(2):
        await chat(router)
    await asyncio.sleep(0.1)
    hosts = [await chat(router) for _ in range(4)]

    assert "a" in hosts  # back in rotation once its cooldown passed


# ----------------------------------------------------------------------------- Retry-After


async def test_retry_after_binds_a_deployment_out_of_rotation() -> None:
    upstream = Upstream(a=status(429, {"retry-after": "30"}), b=status(500))
    router, _ = build_router(upstream, {"m": ["a", "b"]})

    for _ in range(3):
        with pytest.raises(UpstreamError):
            await chat(router)

    # "b" is cooling but non-binding, so it is retried; "a" must not be asked again.
    assert upstream.count("a") == 1
    assert upstream.count("b") == 3


async def test_single_rate_limited_deployment_answers_429_with_retry_after() -> None:
    upstream = Upstream(a=status(429, {"retry-after": "20"}))
    router, _ = build_router(upstream, {"m": ["a"]})

    with pytest.raises(RateLimited) as first:
        await chat(router)
    with pytest.raises(RateLimited) as second:
        await chat(router)

    assert first.value.headers["Retry-After"] == "20"
    assert 1 <= int(second.value.headers["Retry-After"]) <= 20
    assert second.value.http_status == 429
    assert upstream.count("a") == 1


async def test_retry_after_is_capped_by_max_retry_after() -> None:
    upstream = Upstream(a=failing_once(first=status(429, {"retry-after": "3600"})))
    router, _ = build_router(upstream, {"m": ["a"]}, max_retry_after_s=0.05)

    with pytest.raises(RateLimited):
        await chat(router)
    await asyncio.sleep(0.1)

    assert await chat(router) == "a"


async def test_a_success_lifts_the_binding() -> None:
    upstream = Upstream(a=failing_once(first=status(429, {"retry-after-ms": "1"})))
    router, _ = build_router(upstream, {"m": ["a"]})

    with pytest.raises(RateLimited):
        await chat(router)
    await asyncio.sleep(0.01)
    assert await chat(router) == "a"
    assert router.deployments["m"][0].binding is False


# ------------------------------------------------------------------------------ fallbacks


async def test_fallback_model_is_used_when_every_deployment_fails() -> None:
    upstream = Upstream(a=status(500), b=status(502), c=ok)
    router, _ = build_router(
        upstream, {"m": ["a", "b"], "backup": ["c"]}, fallbacks={"m": ["backup"]}
    )
    stats = CallStats()

    assert await chat(router, stats=stats) == "c"
    assert sorted(upstream.hosts[:2]) == ["a", "b"]
    assert upstream.hosts[2] == "c"
    assert stats.attempts == 3
    assert stats.deployment == "openai:c/backup-on-c"


async def test_fallbacks_are_not_used_while_the_model_answers() -> None:
    upstream = Upstream(a=ok, c=ok)
    router, _ = build_router(upstream, {"m": ["a"], "backup": ["c"]}, fallbacks={"m": ["backup"]})

    assert [await chat(router) for _ in range(3)] == ["a"] * 3


async def test_fallbacks_are_not_used_for_a_client_error() -> None:
    upstream = Upstream(a=status(404), c=ok)
    router, _ = build_router(upstream, {"m": ["a"], "backup": ["c"]}, fallbacks={"m": ["backup"]})

    with pytest.raises(UpstreamRejected):
        await chat(router)
    assert upstream.hosts == ["a"]


# -------------------------------------------------------------------------------- streams


async def test_stream_failing_before_its_first_event_is_retried() -> None:
    upstream = Upstream(a=status(500), b=streaming(sse))
    router, _ = build_router(upstream, {"m": ["a", "b"]})

    for _ in range(2):
        items = await open_chat_stream(router)
        blocks = [block async for block in items]
        assert b"".join(blocks) == b"".join(sse("b")[:-1])

    assert upstream.count("a") == 1
    assert all(d.in_flight == 0 for d in router.deployments["m"])


async def test_stream_failing_after_its_first_event_raises_from_the_iterator() -> None:
    upstream = Upstream(a=streaming(lambda h: sse(h, done=False, extra=[b"data: {bad\n\n"])))
    router, _ = build_router(upstream, {"m": ["a"]})

    items = await open_chat_stream(router)
    received = []
    with pytest.raises(UpstreamError):
        async for block in items:
            received.append(block)

    assert b"".join(received) == b"".join(sse("a", done=False))
    assert upstream.hosts == ["a"]  # no retry once data went out
    assert router.deployments["m"][0].in_flight == 0
    assert Upstream.streams[0].closed


async def test_stream_usage_is_counted() -> None:
    usage = b'data: {"choices": [], "usage": ' + json.dumps(USAGE).encode() + b"}\n\n"
    upstream = Upstream(a=streaming(lambda h: sse(h, extra=[usage])))
    router, _ = build_router(upstream, {"m": ["a"]})
    stats = CallStats()

    items = await open_chat_stream(router, stats=stats)
    _ = [block async for block in items]

    assert (stats.prompt_tokens, stats.completion_tokens) == (3, 2)


async def test_closing_a_stream_closes_the_upstream_response() -> None:
    upstream = Upstream(a=streaming(lambda h: sse(h, done=False), hang=True))
    router, _ = build_router(upstream, {"m": ["a"]})

    items = await open_chat_stream(router)
    first = await anext(items)
    assert b'"host": "a"' in first
    assert router.deployments["m"][0].in_flight == 1
    await items.aclose()  # type: ignore[attr-defined]

    assert Upstream.streams[0].closed
    assert router.deployments["m"][0].in_flight == 0


async def test_upstream_error_status_on_a_stream_is_typed() -> None:
    upstream = Upstream(a=status(429, {"retry-after": "5"}))
    router, _ = build_router(upstream, {"m": ["a"]})

    with pytest.raises(RateLimited) as caught:
        await open_chat_stream(router)
    assert caught.value.retry_after_s == 5.0
    assert router.deployments["m"][0].in_flight == 0


# ----------------------------------------------------------------------------- health


async def test_only_upstream_failures_count_against_a_deployment() -> None:
    upstream = Upstream(a=status(400), b=status(503))
    router, metrics = build_router(upstream, {"m": ["a"], "n": ["b"]})

    with pytest.raises(UpstreamRejected):
        await chat(router, model="m")
    with pytest.raises(UpstreamError):
        await chat(router, model="n")

    rejected, failed = router.deployments["m"][0], router.deployments["n"][0]
    assert sample(metrics, "switchyard_upstream_errors_total", deployment=rejected.label,
                  kind="UpstreamRejected") == 0  # fmt: skip
    assert rejected.health.recent().calls == 0 and rejected.health.last_error is None
    assert sample(metrics, "switchyard_upstream_errors_total", deployment=failed.label,
                  kind="UpstreamError") == 1  # fmt: skip
    assert failed.health.consecutive_failures == 1
    assert failed.health.last_error is not None
    assert failed.health.last_error.message == "Upstream error 503: b says 503"


async def test_errors_raised_before_the_upstream_call_are_not_counted() -> None:
    upstream = Upstream(a=ok)
    router, metrics = build_router(upstream, {"m": ["a"]})

    async def refuse(adapter: Adapter) -> Any:
        raise InvalidRequest("An image file is required.", param="image")

    async def leave(adapter: Adapter) -> Any:
        raise ClientDisconnected("The client disconnected before the answer was ready.")

    for invoke in (refuse, leave):
        with pytest.raises((InvalidRequest, ClientDisconnected)):
            await router.call("m", Capability.CHAT, invoke, CallStats())

    deployment = router.deployments["m"][0]
    assert (
        metrics.registry.get_sample_value(
            "switchyard_upstream_errors_total",
            {"deployment": deployment.label, "kind": "InvalidRequest"},
        )
        is None
    )
    assert deployment.health.recent().calls == 0
    assert upstream.hosts == []


async def test_a_stream_failing_after_its_first_event_counts_as_a_failure() -> None:
    upstream = Upstream(a=streaming(lambda h: sse(h, done=False, extra=[b"data: {bad\n\n"])))
    router, _ = build_router(upstream, {"m": ["a"]})

    items = await open_chat_stream(router)
    with pytest.raises(UpstreamError):
        async for _ in items:
            pass

    health = router.deployments["m"][0].health
    assert health.recent().calls == 2  # the start succeeded, then the stream broke
    assert health.consecutive_failures == 1


async def test_a_success_ends_the_cooldown_and_the_failure_streak() -> None:
    upstream = Upstream(a=failing_once())
    router, _ = build_router(upstream, {"m": ["a"]}, cooldown_s=30)

    with pytest.raises(UpstreamError):
        await chat(router)
    deployment = router.deployments["m"][0]
    assert deployment.cooldown_until > 0 and deployment.health.consecutive_failures == 1
    await chat(router)

    assert deployment.cooldown_until == 0.0
    assert deployment.health.consecutive_failures == 0
    assert deployment.health.last_success_at is not None


async def test_an_unhealthy_deployment_is_tried_after_the_others() -> None:
    upstream = Upstream(a=ok, b=ok)
    router, _ = build_router(upstream, {"m": ["a", "b"]})
    first = router.deployments["m"][0]
    for _ in range(first.health.window):
        first.health.failed(UpstreamUnavailable("probe failed"))

    hosts = [await chat(router) for _ in range(4)]

    assert hosts == ["b"] * 4


async def test_required_is_per_model_name() -> None:
    entries = [
        {"name": "m", "adapter": "openai", "base_url": "http://a/v1"},
        {"name": "m", "adapter": "openai", "base_url": "http://b/v1", "required": True},
        {"name": "n", "adapter": "openai", "base_url": "http://c/v1"},
    ]
    settings = settings_from_mapping({"models": entries})
    async with httpx.AsyncClient() as http:
        resources = Resources(settings=settings, http=http)
        deployments: dict[str, list[Deployment]] = {}
        for config in settings.models:
            deployments.setdefault(config.name, []).append(
                Deployment(OpenAIAdapter(config, resources))
            )
    router = Router(deployments, {}, cooldown_s=1, max_retry_after_s=1, metrics=Metrics())

    assert router.required == frozenset({"m"})


async def test_a_probe_records_its_outcome_without_a_cooldown() -> None:
    answers = iter(
        [
            httpx.Response(503, json={"error": {"message": "busy"}}),
            httpx.Response(200, json={"data": []}),
        ]
    )
    seen: list[tuple[str, str, str | None]] = []

    async def models(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, request.url.path, request.headers.get("authorization")))
        return next(answers)

    router, _ = build_router(Upstream(a=models), {"m": ["a"]})
    deployment = router.deployments["m"][0]

    await router.probe(deployment)
    assert deployment.health.consecutive_failures == 1
    assert deployment.health.last_error is not None
    assert deployment.health.last_error.type == "UpstreamError"
    assert deployment.cooldown_until == 0.0
    await router.probe(deployment)
    assert deployment.health.consecutive_failures == 0
    assert seen == [("GET", "/v1/models", "Bearer sk-upstream")] * 2
