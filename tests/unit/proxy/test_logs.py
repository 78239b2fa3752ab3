"""``configure_logging``: one JSON object per line for every logger, warnings, and
uncaught exceptions (in threads too), with the current request's ids."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.context import RequestInfo
from proxy.logs import configure_logging
from proxy.telemetry import bind, unbind


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """stderr as configured by ``configure_logging``; logging's state restored after."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    named = {n: logging.getLogger(n) for n in ("switchyard", "uvicorn", "uvicorn.error")}
    saved = {n: (lg.handlers[:], lg.level, lg.propagate) for n, lg in named.items()}
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    configure_logging("INFO")
    try:
        yield stream
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = saved_root
        for name, logger in named.items():
            logger.handlers[:], logger.level, logger.propagate = saved[name]


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_source_is_a_json_line(captured: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 7)
    logging.getLogger("asyncio").error("Task exception was never retrieved")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old call", DeprecationWarning, stacklevel=1)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("switchyard.app").exception("unhandled")
    sys.excepthook(*_raised(KeyError("outside")))

    def crash() -> None:
        raise RuntimeError("in a thread")

    thread = threading.Thread(target=crash, name="worker-1")
    thread.start()
    thread.join()

    entries = lines(captured)
    by_logger = {e["logger"]: e for e in entries}
    assert by_logger["uvicorn.error"]["msg"] == "Started server process [7]"
    assert by_logger["asyncio"]["level"] == "error"
    assert "an old call" in by_logger["py.warnings"]["msg"]
    [unhandled, outside, threaded] = [e for e in entries if "exc" in e]
    assert unhandled["exc"].startswith("Traceback") and "ValueError: boom" in unhandled["exc"]
    assert outside["level"] == "critical" and "KeyError: 'outside'" in outside["exc"]
    assert threaded["msg"] == "uncaught exception in thread worker-1"
    assert "RuntimeError: in a thread" in threaded["exc"]


def _raised(error: BaseException) -> tuple[type[BaseException], BaseException, Any]:
    try:
        raise error
    except BaseException as caught:
        return type(caught), caught, caught.__traceback__


def test_lines_written_during_a_request_carry_its_ids(captured: io.StringIO) -> None:
    info = RequestInfo(request_id="req-42", started=0.0, headers=[(b"api-key", b"sk-secret-1")])
    token = bind(info)
    try:
        logging.getLogger("switchyard.router").warning("deployment failed")
    finally:
        unbind(token)
    logging.getLogger("switchyard.router").warning("outside any request")
    inside, outside = lines(captured)
    assert inside["request_id"] == "req-42"
    assert inside["team"] == "default"
    assert inside["key"] == info.key_id and len(inside["key"]) == 16
    assert "sk-secret-1" not in captured.getvalue()
    assert "request_id" not in outside and "key" not in outside
