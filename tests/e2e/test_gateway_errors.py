"""Client errors: each one is an OpenAI error object with the right status and class."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import AUTH, CLIENT_KEY, sdk
from tests.support.fake_openai import FakeOpenAI, status_fault
from tests.support.servers import RunningServer

USER = [{"role": "user", "content": "hi"}]


def _error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object, after checking the envelope has exactly OpenAI's keys."""
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


def test_unknown_model_is_not_found(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=USER)

    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert "no-such-model" in caught.value.message
    assert fake.received() == []


def test_unknown_model_when_streaming_is_a_404_too(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=USER, stream=True)


def test_wrong_key_is_rejected(gateway: RunningServer, fake: FakeOpenAI) -> None:
    with (
        sdk(gateway, key="sk-wrong") as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="gpt-test", messages=USER)

    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert fake.received() == []


def test_wrong_key_is_rejected_on_every_v1_route(gateway: RunningServer) -> None:
    with sdk(gateway, key="sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
        with pytest.raises(openai.AuthenticationError):
            client.embeddings.create(model="embed-test", input="x")
        with pytest.raises(openai.AuthenticationError):
            client.completions.create(model="gpt-test", prompt="x")


def test_missing_key_is_rejected(raw: httpx.Client) -> None:
    response = raw.post("/v1/chat/completions", json={"model": "gpt-test", "messages": USER})

    assert response.status_code == 401
    assert _error_of(response)["code"] == "invalid_api_key"


def test_api_key_header_is_accepted(raw: httpx.Client, fake: FakeOpenAI) -> None:
    body = {"model": "gpt-test", "messages": USER}
    accepted = raw.post("/v1/chat/completions", json=body, headers={"api-key": CLIENT_KEY})
    rejected = raw.post("/v1/chat/completions", json=body, headers={"api-key": "nope"})

    assert accepted.status_code == 200
    assert accepted.json()["choices"][0]["message"]["content"] == "Hello! You said: hi"
    assert rejected.status_code == 401


def test_wrong_type_is_a_bad_request_naming_the_param(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-test",
            messages=USER,
            temperature="very hot",  # type: ignore[arg-type]
        )

    assert caught.value.status_code == 400
    assert caught.value.param == "temperature"
    assert fake.received() == []


def test_wrong_nested_type_names_the_nested_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "wizard", "content": "hi"}],  # type: ignore[list-item, misc]
        )

    assert caught.value.param == "messages[0].role"


def test_missing_required_field_names_it(raw: httpx.Client) -> None:
    response = raw.post("/v1/chat/completions", json={"model": "gpt-test"}, headers=AUTH)

    assert response.status_code == 400
    error = _error_of(response)
    assert error["param"] == "messages"
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "content",
    [b'{"model": "gpt-test", "messages": [', b"not json at all", b"[1, 2]", b""],
    ids=["truncated", "garbage", "not-an-object", "empty"],
)
def test_malformed_json_is_a_bad_request(raw: httpx.Client, content: bytes) -> None:
    response = raw.post(
        "/v1/chat/completions",
        content=content,
        headers={**AUTH, "content-type": "application/json"},
    )

    assert response.status_code == 400
    assert _error_of(response)["type"] == "invalid_request_error"


def test_body_over_the_limit_is_413(raw: httpx.Client, fake: FakeOpenAI) -> None:
    big = "x" * (1024 * 1024 + 1)  # the shared gateway allows 1 MiB
    response = raw.post(
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": big}]},
        headers=AUTH,
    )

    assert response.status_code == 413
    assert _error_of(response)["code"] == "payload_too_large"
    assert fake.received() == []


def test_413_through_the_sdk(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.embeddings.create(model="embed-test", input=["y" * 600_000, "z" * 600_000])

    assert caught.value.status_code == 413


def test_upstream_4xx_is_passed_through(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.faults["upstream-picky"] = status_fault(
        400,
        "This model's maximum context length is 8192 tokens.",
        error_type="invalid_request_error",
        param="messages",
        code="context_length_exceeded",
    )

    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="picky", messages=USER)

    assert caught.value.status_code == 400
    assert caught.value.message.endswith("This model's maximum context length is 8192 tokens.")
    assert caught.value.param == "messages"
    assert caught.value.code == "context_length_exceeded"
    assert len(fake.received(model="upstream-picky")) == 1  # a 4xx is never retried


def test_upstream_4xx_is_passed_through_when_streaming(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    fake.faults["upstream-picky"] = status_fault(
        422, "Unprocessable: unknown sampler", error_type="invalid_request_error"
    )

    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="picky", messages=USER, stream=True)

    assert "unknown sampler" in caught.value.message


def test_unknown_path_is_an_openai_404(raw: httpx.Client) -> None:
    response = raw.get("/v1/no/such/route", headers=AUTH)

    assert response.status_code == 404
    _error_of(response)
