"""Structured logging: every line on stderr is one JSON object.

``configure_logging`` puts one JSON handler on the root logger, so Switchyard's own
loggers, uvicorn's (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``), ``asyncio``,
``warnings`` (``py.warnings``) and any library's all come out the same way. Uncaught
exceptions (main thread, other threads) are logged too, their traceback in the ``exc``
field (a JSON string: one line).

A line written while a request is served carries its ``request_id``, ``team`` and
``key`` (ids, never the key itself; ``proxy.telemetry.current``). The access log writes
one line per request with ids, model, deployment, status, durations and token counts.
Prompt text never appears unless ``server.log_prompts`` is switched on for debugging,
and credentials never do.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

import msgspec

from proxy.telemetry import current

_encode = msgspec.json.Encoder(enc_hook=repr).encode
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with terminal colours
}
_TRACEBACK = "Traceback (most recent call last):"
#: Loggers that get the configured level; everything else logs warnings and above.
_OWN = ("switchyard", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def _split_traceback(message: str) -> tuple[str, str | None]:
    """A message that embeds a formatted traceback (uvicorn logs the text Litestar hands
    it when start-up fails): the text before it, and the traceback."""
    at = message.find(_TRACEBACK)
    if at < 0:
        return message, None
    start = message.rfind("\n", 0, at) + 1
    return message[:start].strip() or "traceback", message[start:].rstrip()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message, embedded = _split_traceback(record.getMessage())
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": message,
        }
        if embedded is not None:
            entry["exc"] = embedded
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return _encode(entry).decode()


class RequestFields(logging.Filter):
    """Adds the current request's ``request_id``, ``team`` and ``key`` ids to a record
    that does not set them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        info = current()
        if info is not None:
            fields = record.__dict__
            fields.setdefault("request_id", info.request_id)
            fields.setdefault("team", info.team_id)
            if "key" not in fields and (key := info.key_id) is not None:
                fields["key"] = key
        return True


def _log_uncaught(
    kind: type[BaseException], error: BaseException, tb: TracebackType | None
) -> None:
    logging.getLogger("switchyard").critical("uncaught exception", exc_info=(kind, error, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or args.exc_type is SystemExit:
        return
    thread = args.thread.name if args.thread is not None else "?"
    logging.getLogger("switchyard").critical(
        "uncaught exception in thread %s",
        thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for every logger; ``level`` for Switchyard's and uvicorn's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in _OWN:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(level)
        logger.propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
