"""Routing generations: requests stay on the generation they began with, and a retired
generation closes only what no live generation shares, once nothing uses it."""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.base import Adapter, DeploymentConfig
from proxy.generation import Generation, Generations
from proxy.metrics import Metrics
from proxy.router import Deployment, Router
from proxy.settings import Settings


class Recorded(Adapter):
    name = "recorded"

    def __init__(self, model: str) -> None:
        super().__init__(DeploymentConfig(name=model, adapter="recorded"), None)  # type: ignore[arg-type]
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


class Ext:
    def __init__(self) -> None:
        self.closed = 0
        self.working = False

    def busy(self) -> bool:
        return self.working

    async def aclose(self) -> None:
        self.closed += 1


def generation(number: int, deployments: list[Deployment], **extensions: Any) -> Generation:
    table: dict[str, list[Deployment]] = {}
    for deployment in deployments:
        table.setdefault(deployment.adapter.config.name, []).append(deployment)
    router = Router(table, {}, cooldown_s=1, max_retry_after_s=1, metrics=Metrics())

    async def count(model: str, text: str) -> int:
        return 0

    return Generation(
        number=number,
        settings=Settings(),
        router=router,
        gateway=None,  # type: ignore[arg-type]
        model_cards=[],
        extensions=dict(extensions),
        prices={},
        count_tokens=count,
        adapters=[d.adapter for d in deployments],
    )


async def settle() -> None:
    """Let the retiring task run a few rounds (it polls work in flight every 50 ms)."""
    for _ in range(5):
        await asyncio.sleep(0.06)


async def test_a_request_keeps_its_generation_and_the_old_one_closes_after_it() -> None:
    kept, dropped = Recorded("kept"), Recorded("dropped")
    kept_deployment = Deployment(kept)
    first = generation(1, [kept_deployment, Deployment(dropped)], persona=Ext())
    generations = Generations(first)
    pinned, token = generations.enter()
    second = generation(2, [kept_deployment], persona=Ext())
    generations.swap(second)

    assert generations.pinned() is first  # this request began before the swap
    assert generations.current is second
    await settle()
    assert dropped.closed == 0 and first.extensions["persona"].closed == 0

    generations.leave(pinned, token)
    assert generations.pinned() is second
    await generations.retired()
    assert dropped.closed == 1
    assert first.extensions["persona"].closed == 1
    assert kept.closed == 0  # carried into the live generation
    assert second.extensions["persona"].closed == 0

    await generations.aclose()
    assert kept.closed == 1 and dropped.closed == 1


async def test_a_retired_generation_waits_for_work_in_flight_on_what_it_closes() -> None:
    dropped = Recorded("m")
    busy = Deployment(dropped)
    generations = Generations(generation(1, [busy]))
    busy.in_flight = 1  # a video job running on it, after its request had ended
    generations.swap(generation(2, [Deployment(Recorded("m"))]))
    await settle()
    assert dropped.closed == 0
    busy.in_flight = 0
    await generations.retired()
    assert dropped.closed == 1
    await generations.aclose()


async def test_a_retired_generation_waits_for_an_extension_still_at_work() -> None:
    indexing = Ext()
    indexing.working = True  # a directory index that outlives its request
    generations = Generations(generation(1, [], rag=indexing))
    generations.swap(generation(2, [], rag=Ext()))
    await settle()
    assert indexing.closed == 0
    indexing.working = False
    await generations.retired()
    assert indexing.closed == 1
    await generations.aclose()


async def test_a_part_shared_by_three_generations_closes_with_the_last() -> None:
    shared = Recorded("s")
    deployment = Deployment(shared)
    generations = Generations(generation(1, [deployment]))
    request = generations.enter()
    generations.swap(generation(2, [deployment]))
    generations.swap(generation(3, [Deployment(Recorded("other"))]))
    await settle()
    assert shared.closed == 0  # generation 1 still serves a request on it
    generations.leave(*request)
    await generations.retired()
    assert shared.closed == 1
    await generations.aclose()
    assert shared.closed == 1


async def test_several_apps_in_one_process_see_their_own_generation() -> None:
    a = Generations(generation(1, [Deployment(Recorded("a"))]))
    b = Generations(generation(1, [Deployment(Recorded("b"))]))
    pinned = a.enter()
    assert b.pinned() is b.current
    assert a.pinned() is pinned[0]
    a.leave(*pinned)
    await a.aclose()
    await b.aclose()
