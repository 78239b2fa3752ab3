"""The Responses API passed through to a native upstream (``native: [responses]`` on an
``openai`` deployment), through the official ``openai`` package against the fake OpenAI
upstream's ``/v1/responses``; with an extension active, the request is translated."""

from __future__ import annotations

import re
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from openai.types.responses import ResponseErrorEvent

from extensions.personas import BUNDLED_DIR
from proxy.server import GatewayServer
from proxy.settings import settings_from_mapping
from tests.e2e.conftest import model_entry
from tests.support.fake_openai import FakeOpenAI, Fault, status_fault, wait_until
from tests.support.fake_openai_responses import responses_events
from tests.support.servers import RunningServer, serve_gateway, serve_switchyard

KEY = "sk-responses-native"
EDITOR_PROMPT = yaml.safe_load((BUNDLED_DIR / "editor.yaml").read_text())["system_prompt"]


@pytest.fixture(scope="module")
def gateway(fake_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("responses-native")
    config = {
        "server": {"api_keys": [KEY], "data_dir": str(data)},
        "models": [model_entry("gpt-native", "upstream-native", fake_url, native=["responses"])],
    }
    with serve_gateway(config) as running:
        yield running


@pytest.fixture
def client(gateway: RunningServer, fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=KEY, max_retries=0, timeout=15) as c:
        yield c


def test_native_create_passes_the_body_through(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    response = client.responses.create(
        model="gpt-native", input="hi", instructions="Be kind.", previous_response_id="resp_up1"
    )
    assert response.output_text == "Hello! You said: hi (after resp_up1)"
    assert response.id.startswith("resp_fake")  # the upstream's id
    assert response.usage is not None and response.usage.input_tokens == 1
    seen = fake.last("/v1/responses")
    assert seen.body == {
        "model": "upstream-native",
        "input": "hi",
        "instructions": "Be kind.",
        "previous_response_id": "resp_up1",
    }
    assert seen.headers["authorization"].startswith("Bearer sk-upstream")
    assert fake.received("/v1/chat/completions") == []
    # Stored at the upstream, not here.
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_native_stream_is_the_upstreams_event_stream(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    with client.responses.stream(model="gpt-native", input="hello there") as stream:
        events = list(stream)
        final = stream.get_final_response()
    expected = responses_events({"input": "hello there"}, "x")
    assert [e.type for e in events] == [e["type"] for e in expected]
    assert [e.sequence_number for e in events] == list(range(len(expected)))
    assert final.output_text == "Hello! You said: hello there"
    assert fake.last("/v1/responses").body["stream"] is True


def test_native_upstream_errors_are_openai_errors(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    fake.faults["upstream-native"] = status_fault(
        400, "Invalid value for 'input'.", error_type="invalid_request_error", param="input"
    )
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="gpt-native", input="hi")
    assert raised.value.body["message"] == "Invalid value for 'input'."  # type: ignore[index]
    assert raised.value.body["param"] == "input"  # type: ignore[index]


def test_native_with_an_extension_is_translated(client: openai.OpenAI, fake: FakeOpenAI) -> None:
    response = client.responses.create(model="gpt-native+persona:editor", input="hi")
    assert response.output_text == "Hello! You said: hi"
    assert fake.received("/v1/responses") == []
    assert fake.last("/v1/chat/completions").body["messages"][0] == {
        "role": "system",
        "content": EDITOR_PROMPT,
    }


# ------------------------------------------------------------ a stream cut partway

CUT_AFTER = 4
CUT_MESSAGE = "The upstream for 'gpt-native' ended the stream before it was complete."


def _failed_streams(gateway: RunningServer) -> float:
    """``switchyard_requests_total`` of native Responses requests that ended with 502."""
    text = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    wanted = 'switchyard_requests_total{model="gpt-native",route="responses",status="502"} '
    for line in text.splitlines():
        if line.startswith(wanted):
            return float(line[len(wanted) :])
    return 0.0


def test_a_native_stream_cut_partway_ends_with_an_error_event(
    client: openai.OpenAI, fake: FakeOpenAI, gateway: RunningServer
) -> None:
    fake.faults["upstream-native"] = Fault("truncate", after=CUT_AFTER)
    before = _failed_streams(gateway)

    events = list(client.responses.create(model="gpt-native", input="hello there", stream=True))

    expected = responses_events({"input": "hello there"}, "x")[:CUT_AFTER]
    assert [e.type for e in events] == [e["type"] for e in expected] + ["error"]
    assert [e.sequence_number for e in events] == [*range(CUT_AFTER), CUT_AFTER]
    error = events[-1]
    assert isinstance(error, ResponseErrorEvent)
    assert error.message == CUT_MESSAGE
    assert error.code == "upstream_error"
    assert error.param is None
    # Recorded as failed (the upstream's fault: 502), not as the 200 the status line said.
    assert wait_until(lambda: _failed_streams(gateway) == before + 1)


def test_a_native_stream_cut_partway_on_the_wire(gateway: RunningServer, fake: FakeOpenAI) -> None:
    fake.faults["upstream-native"] = Fault("truncate", after=2)
    body = {"model": "gpt-native", "input": "hi", "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", f"{gateway.url}/v1/responses", json=body, headers=headers, timeout=15
    ) as reply:
        assert reply.status_code == 200
        text = reply.read().decode()  # a complete body: no broken chunked transfer

    frames = text.split("\n\n")
    assert frames[-1] == ""
    assert [re.match(r"event: (\S+)\n", f).group(1) for f in frames[:-1]] == [  # type: ignore[union-attr]
        "response.created",
        "response.in_progress",
        "error",
    ]
    assert frames[-2] == (
        'event: error\ndata: {"type":"error","code":"upstream_error","message":'
        f'"{CUT_MESSAGE}","param":null,"sequence_number":2}}'
    )


def test_the_sdks_stream_helper_reads_the_error_event(
    client: openai.OpenAI, fake: FakeOpenAI
) -> None:
    """openai-python's ``responses.stream()`` yields an ``error`` event as a
    ``ResponseErrorEvent`` (it raises no ``APIError`` for it), and then has no final
    response; a cut body would raise ``APIConnectionError`` instead."""
    fake.faults["upstream-native"] = Fault("truncate", after=CUT_AFTER)

    with client.responses.stream(model="gpt-native", input="hello there") as stream:
        events = list(stream)
        with pytest.raises(RuntimeError) as raised:
            stream.get_final_response()
    assert str(raised.value) == "Didn't receive a `response.completed` event."

    assert [e.type for e in events][-2:] == ["response.content_part.added", "error"]
    error = events[-1]
    assert isinstance(error, ResponseErrorEvent)
    assert (error.sequence_number, error.message) == (CUT_AFTER, CUT_MESSAGE)


def test_the_shutdown_frame_follows_the_events_sent(fake: FakeOpenAI, fake_url: str) -> None:
    fault = fake.faults["upstream-held"] = Fault("hold", after=3)
    config = {
        "server": {"api_keys": [KEY], "data_dir": tempfile.mkdtemp(), "drain_timeout_s": 0.5},
        "models": [model_entry("held", "upstream-held", fake_url, native=["responses"])],
    }
    try:
        with (
            serve_switchyard(settings_from_mapping(config, "<test>")) as server,
            openai.OpenAI(
                base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=15
            ) as client,
        ):
            stream = iter(client.responses.create(model="held", input="hi", stream=True))
            first = [next(stream) for _ in range(3)]
            # Translated (an extension is on), held after 3 chat chunks: 6 events.
            translated = iter(
                client.responses.create(model="held+persona:editor", input="hi", stream=True)
            )
            first_translated = [next(translated) for _ in range(6)]
            gateway = server.server
            assert isinstance(gateway, GatewayServer)
            gateway.handle_exit(signal.SIGTERM, None)
            rest, rest_translated = list(stream), list(translated)
    finally:
        fault.release.set()

    assert [e.sequence_number for e in first] == [0, 1, 2]
    assert [e.sequence_number for e in first_translated] == [0, 1, 2, 3, 4, 5]
    assert first_translated[-1].type == "response.output_text.delta"
    for events, after in ((rest, 3), (rest_translated, 6)):
        [ended] = events
        assert isinstance(ended, ResponseErrorEvent)
        assert (ended.code, ended.sequence_number) == ("server_shutting_down", after)
        assert ended.message == (
            "The server is shutting down; the stream was ended before it finished."
        )
