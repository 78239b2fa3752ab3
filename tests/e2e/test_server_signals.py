"""Signals on the real ``switchyard serve`` process.

SIGTERM: readiness turns 503 at once, no new connections are accepted, requests in
flight finish if they end within ``server.drain_timeout_s``, and a stream that outlives
it ends with an SSE error event (not a broken chunked read) and is logged as such.
SIGHUP reloads the configuration and the server keeps serving (the reload itself:
``test_reload_signals``).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import CLIENT_KEY, model_entry, sdk
from tests.support.fake_openai import FakeOpenAI, Fault, wait_until
from tests.support.servers import STREAM_ENDED_BY_SHUTDOWN, ServedProcess, serve_process

ASK = [{"role": "user", "content": "hi"}]


class ServeProcess(ServedProcess):
    """The served process, with its JSON log read back."""

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
        return lines

    def access_log(self, path: str) -> list[dict[str, Any]]:
        return [
            e for e in self.log_lines() if e["logger"] == "switchyard.access" and e["path"] == path
        ]

    def messages(self) -> list[str]:
        return [e["msg"] for e in self.log_lines()]


@contextmanager
def switchyard_serve(tmp_path: Path, fake_url: str, **server: Any) -> Iterator[ServeProcess]:
    """``switchyard serve`` in a subprocess, running this checkout's code."""
    config = {
        "server": {"data_dir": str(tmp_path / "data"), "api_keys": [CLIENT_KEY], **server},
        "models": [model_entry("held", "upstream-held", fake_url, timeout_s=60)],
    }
    with serve_process(config, tmp_path) as served:
        yield ServeProcess(served.proc, served.url, served.log)


def refuses_connections(url: str) -> bool:
    try:
        httpx.get(f"{url}/health", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def draining(probe: httpx.Client) -> bool:
    answer = probe.get("/health/ready")
    return answer.status_code == 503 and answer.json() == {"status": "not_ready"}


def test_sigterm_lets_a_stream_in_flight_finish_and_stops_being_ready(
    tmp_path: Path, fake: FakeOpenAI, fake_url: str
) -> None:
    fault = fake.faults["upstream-held"] = Fault("hold", after=2)
    with (
        switchyard_serve(tmp_path, fake_url, drain_timeout_s=30) as server,
        sdk(server) as client,  # type: ignore[arg-type]
        httpx.Client(base_url=server.url, timeout=10) as probe,
    ):
        # The probe's connection is open before the signal, as a load balancer's is.
        assert probe.get("/health").status_code == 200
        stream = client.chat.completions.create(model="held", messages=ASK, stream=True)  # type: ignore[arg-type]
        chunks = iter(stream)
        assert next(chunks).choices[0].delta.role == "assistant"

        server.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: draining(probe), timeout=10)
        assert wait_until(lambda: refuses_connections(server.url), timeout=10)
        assert server.proc.poll() is None

        fault.release.set()
        rest = list(chunks)
        text = "Hello! You said: hi"
        assert "".join(c.choices[0].delta.content or "" for c in rest if c.choices) == text
        assert rest[-1].choices[0].finish_reason == "stop"
        assert server.proc.wait(timeout=30) == -signal.SIGTERM

    [line] = server.access_log("/v1/chat/completions")
    assert line["status"] == 200
    assert "outcome" not in line
    # role, four content deltas, the finish chunk and [DONE]
    assert line["events_sent"] == 7


def test_sigterm_ends_a_stream_that_outlives_the_drain_with_an_error_event(
    tmp_path: Path, fake: FakeOpenAI, fake_url: str
) -> None:
    fault = fake.faults["upstream-held"] = Fault("hold", after=2)
    try:
        with (
            switchyard_serve(tmp_path, fake_url, drain_timeout_s=1) as server,
            sdk(server) as client,
        ):  # type: ignore[arg-type]
            stream = client.chat.completions.create(model="held", messages=ASK, stream=True)  # type: ignore[arg-type]
            chunks = iter(stream)
            assert next(chunks).choices[0].delta.role == "assistant"
            assert next(chunks).choices[0].delta.content == "Hello!"

            server.proc.send_signal(signal.SIGTERM)
            with pytest.raises(openai.APIError) as ended:
                next(chunks)
            assert server.proc.wait(timeout=30) == -signal.SIGTERM
    finally:
        fault.release.set()

    # An error event the SDK reads as such, not a broken read (APIConnectionError).
    assert type(ended.value) is openai.APIError
    assert ended.value.body == STREAM_ENDED_BY_SHUTDOWN
    [line] = server.access_log("/v1/chat/completions")
    assert line["status"] == 200
    assert line["outcome"] == "ended_by_shutdown"
    assert line["events_sent"] == 2
    assert "drain timeout: ended 1 request(s) still running" in server.messages()


def test_sighup_reloads_and_the_server_keeps_serving(
    tmp_path: Path, fake: FakeOpenAI, fake_url: str
) -> None:
    with switchyard_serve(tmp_path, fake_url) as server, sdk(server) as client:  # type: ignore[arg-type]
        server.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "configuration reloaded" in server.messages(), timeout=10)
        assert server.proc.poll() is None
        answer = client.chat.completions.create(model="held", messages=ASK)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "Hello! You said: hi"
