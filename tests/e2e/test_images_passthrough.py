"""Images through the ``openai`` (remote) adapter: JSON and multipart passed through to an
OpenAI-compatible provider, with only ``model`` replaced."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from litestar import Litestar, Request, Response, post
from litestar.datastructures import UploadFile

from tests.support.fake_comfyui import png_bytes
from tests.support.servers import RunningServer, serve_asgi, serve_gateway

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


UPSTREAM_KEY = "sk-provider-secret"
ANSWER = {"created": 1, "data": [{"url": "https://provider.example/img.png"}]}


class Provider:
    """A minimal OpenAI images API that records what it received."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    def app(self) -> Litestar:
        provider = self

        @post("/v1/images/generations", status_code=200)
        async def generations(request: Request[Any, Any, Any]) -> Response[Any]:
            body = await request.json()
            provider.received.append(
                {"path": "generations", "auth": request.headers.get("authorization"), **body}
            )
            if body.get("prompt") == "refuse":
                error = {"message": "Your prompt was rejected.", "type": "invalid_request_error"}
                return Response(
                    {"error": {**error, "code": "content_policy_violation"}}, status_code=400
                )
            return Response(ANSWER)

        @post("/v1/images/edits", status_code=200)
        async def edits(request: Request[Any, Any, Any]) -> Response[Any]:
            form = await request.form()
            record: dict[str, Any] = {"path": "edits", "files": [], "fields": {}}
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    data = await value.read()
                    record["files"].append((name, value.filename, digest(data)))
                else:
                    record["fields"][name] = value
            provider.received.append(record)
            return Response(ANSWER)

        return Litestar([generations, edits], request_max_body_size=64 << 20)


@pytest.fixture(scope="module")
def provider() -> Iterator[tuple[Provider, RunningServer]]:
    fake = Provider()
    with serve_asgi(fake.app()) as running:
        yield fake, running


@pytest.fixture(scope="module")
def client(
    provider: tuple[Provider, RunningServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[openai.OpenAI]:
    model = {
        "name": "remote-images",
        "adapter": "openai",
        "model": "dall-e-upstream",
        "base_url": f"{provider[1].url}/v1",
        "api_key": UPSTREAM_KEY,
    }
    server = {"data_dir": str(tmp_path_factory.mktemp("data")), "max_body_mb": 8}
    with (
        serve_gateway({"server": server, "models": [model]}) as gateway,
        openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="x", max_retries=0) as sdk,
    ):
        yield sdk


def test_generation_is_passed_through(
    client: openai.OpenAI, provider: tuple[Provider, Any]
) -> None:
    result = client.images.generate(
        model="remote-images", prompt="a fox", size="1024x1024", extra_body={"style_preset": "ink"}
    )
    assert result.data[0].url == "https://provider.example/img.png"
    sent = provider[0].received[-1]
    assert sent["model"] == "dall-e-upstream" and sent["prompt"] == "a fox"
    assert sent["style_preset"] == "ink"  # unknown fields reach the provider
    assert sent["auth"] == f"Bearer {UPSTREAM_KEY}"


def test_provider_errors_keep_status_and_message(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="remote-images", prompt="refuse")
    assert caught.value.code == "content_policy_violation"
    assert "rejected" in caught.value.message


def test_multipart_edit_with_several_images_and_a_large_one(
    client: openai.OpenAI, provider: tuple[Provider, Any]
) -> None:
    large = png_bytes((1200, 1200), (1, 2, 3, 4))
    large += b"\0" * (3 << 20)  # spooled to disk by the gateway, streamed on
    small = png_bytes((8, 8), (9, 9, 9, 255))
    mask = png_bytes((8, 8), (0, 0, 0, 0))
    client.images.edit(
        model="remote-images",
        image=[("large.png", large, "image/png"), ("small.png", small, "image/png")],
        mask=("mask.png", mask, "image/png"),
        prompt="merge them",
        n=2,
    )
    sent = provider[0].received[-1]
    assert sent["fields"]["model"] == "dall-e-upstream" and sent["fields"]["prompt"] == "merge them"
    assert sent["fields"]["n"] == "2"
    images = [f for f in sent["files"] if f[0] == "image[]"]  # their order is kept
    assert images == [
        ("image[]", "large.png", digest(large)),
        ("image[]", "small.png", digest(small)),
    ]
    assert ("mask", "mask.png", digest(mask)) in sent["files"] and len(sent["files"]) == 3
