"""Every line ``switchyard serve`` writes is one JSON object: its own loggers, uvicorn's,
and tracebacks (in an ``exc`` field). A line written while a request is served names
its request, team and key ids; keys and prompt text never appear.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from proxy.keys import key_id
from tests.e2e.conftest import CLIENT_KEY, UPSTREAM_KEY, model_entry
from tests.support.fake_openai import FakeOpenAI, status_fault
from tests.support.servers import ROOT, free_port, serve_process

PROMPT = "my private question about marmalade"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` decoded; a line that is not a JSON object fails the test."""
    lines = []
    for line in text.splitlines():
        entry = json.loads(line)
        assert isinstance(entry, dict), line
        lines.append(entry)
    return lines


def ask(url: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": PROMPT}]},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
        timeout=30,
    )


def test_every_line_of_a_served_process_is_json_with_request_ids(
    fake: FakeOpenAI, fake_url: str, tmp_path: Path
) -> None:
    fake.faults["upstream-flaky"] = status_fault(503)
    config = {
        "defaults": False,
        "server": {"api_keys": [CLIENT_KEY], "data_dir": str(tmp_path / "data")},
        "models": [
            model_entry("m", "upstream-gpt", fake_url),
            model_entry("flaky", "upstream-flaky", fake_url),
        ],
    }
    with serve_process(config, tmp_path) as served:
        ok = ask(served.url, "m")
        failed = ask(served.url, "flaky")
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=60) == -signal.SIGTERM  # after a clean shutdown
        text = served.log.read_text(encoding="utf-8")
    assert (ok.status_code, failed.status_code) == (200, 502)
    lines = json_lines(text)

    uvicorn = {e["msg"] for e in lines if e["logger"] == "uvicorn.error"}
    assert "Application startup complete." in uvicorn
    assert any(m.startswith("Started server process") for m in uvicorn)
    assert all("color_message" not in e for e in lines)

    me = key_id(CLIENT_KEY)
    [cooling] = [e for e in lines if e["logger"] == "switchyard.router"]
    assert cooling["level"] == "warning" and "cooling down" in cooling["msg"]
    assert cooling["request_id"] == failed.headers["x-request-id"]
    assert (cooling["team"], cooling["key"]) == ("default", me)
    access = {e["request_id"]: e for e in lines if e["logger"] == "switchyard.access"}
    for response in (ok, failed):
        entry = access[response.headers["x-request-id"]]
        assert (entry["team"], entry["key"]) == ("default", me)
    assert access[failed.headers["x-request-id"]]["status"] == 502
    for secret in (CLIENT_KEY, UPSTREAM_KEY, "marmalade"):
        assert secret not in text


def test_a_traceback_is_one_json_line(tmp_path: Path) -> None:
    """Start-up fails (the state database refuses connections): uvicorn logs the
    traceback, which must still be one JSON line."""
    config = {
        "defaults": False,
        "server": {"port": free_port(), "data_dir": str(tmp_path / "data")},
        "state": {"database": f"postgresql://switchyard@127.0.0.1:{free_port()}/nothing"},
        "rag": {"chroma_url": "http://127.0.0.1:9"},  # PostgreSQL state: replicas' RAG
    }
    path = tmp_path / "switchyard.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    finished = subprocess.run(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)],
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": pythonpath},
        timeout=120,
        check=False,
    )
    assert finished.returncode != 0
    lines = json_lines(finished.stderr.decode("utf-8"))
    assert finished.stdout == b""
    tracebacks = [e for e in lines if "exc" in e]
    assert tracebacks, lines
    assert all("Traceback (most recent call last):" in e["exc"].splitlines()[0] for e in tracebacks)
    assert any("ConnectionRefusedError" in e["exc"] or "OSError" in e["exc"] for e in tracebacks)
