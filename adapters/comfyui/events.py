"""Reading ComfyUI's answers: websocket messages, ``/history`` entries and errors.

ComfyUI's protocol, as its ``server.py`` and ``execution.py`` speak it: ``/ws`` sends
JSON text frames ``{"type": ..., "data": {...}}`` to the client id that submitted a
prompt (binary frames are preview images, ignored here). For one prompt the sequence
is ``execution_start``, ``execution_cached`` (nodes skipped), then for each node
``executing`` {node}, ``progress`` {value, max} while a sampler runs and ``executed``
{node, output} when it saved files; finally ``executing`` with ``node: null`` (and
``execution_success`` in newer versions). A failure is ``execution_error`` with
``exception_message``. ``/history/{prompt_id}`` is empty until the prompt ran, then
holds its ``outputs`` and a ``status`` with the same messages.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import InvalidRequest, UpstreamError

#: ``code`` of the errors that carry ComfyUI's own message.
NODE_ERROR = "comfyui_node_error"
EXECUTION_ERROR = "comfyui_execution_error"

_VIDEO_TYPES = {"image/gif", "image/webp", "image/apng"}  # animated outputs count as video


@dataclass(frozen=True, slots=True)
class OutputFile:
    node: str
    filename: str
    subfolder: str
    type: str

    @property
    def content_type(self) -> str:
        guessed, _ = mimetypes.guess_type(self.filename)
        return guessed or "application/octet-stream"

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def is_video(self) -> bool:
        return self.content_type.startswith("video/") or self.content_type in _VIDEO_TYPES


def rejected(body: Any, model: str) -> InvalidRequest:
    """The ``/prompt`` 400 answer (``error`` and ``node_errors``) as one readable message."""
    parts: list[str] = []
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        head = str(error.get("message") or "invalid prompt")
        details = error.get("details")
        parts.append(f"{head}: {details}" if details else head)
    elif isinstance(error, str):
        parts.append(error)
    node_errors = body.get("node_errors") if isinstance(body, dict) else None
    for node_id, info in (node_errors or {}).items():
        if not isinstance(info, dict):
            continue
        for item in info.get("errors") or ():
            text = str(item.get("message", "error"))
            if item.get("details"):
                text = f"{text}: {item['details']}"
            parts.append(f"node {node_id} ({info.get('class_type', '?')}): {text}")
    message = "; ".join(parts) or "the workflow was rejected"
    return InvalidRequest(
        f"ComfyUI rejected the workflow for '{model}': {message}", code=NODE_ERROR
    )


def execution_failed(data: dict[str, Any], model: str) -> UpstreamError:
    node = data.get("node_id")
    where = f" in node {node} ({data.get('node_type', '?')})" if node is not None else ""
    message = str(data.get("exception_message") or "unknown error").strip()
    return UpstreamError(
        f"ComfyUI failed running the workflow for '{model}'{where}: {message}",
        code=EXECUTION_ERROR,
    )


def history_outputs(entry: dict[str, Any], wanted: tuple[str, ...]) -> list[OutputFile]:
    """Files saved by the output nodes (all of them, or those in ``wanted``), in node order.

    Output lists are ``images`` for images (and the core video nodes), ``gifs`` for
    VideoHelperSuite, ``audio`` and others; any list of ``{filename, subfolder, type}``
    counts. Previews (``type: temp``) count only when nothing was saved for real.
    """
    outputs = entry.get("outputs") or {}
    found: list[OutputFile] = []
    for node_id in wanted or tuple(outputs):
        for items in (outputs.get(node_id) or {}).values():
            if not isinstance(items, list):
                continue
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("filename"), str):
                    found.append(
                        OutputFile(
                            node_id,
                            item["filename"],
                            str(item.get("subfolder") or ""),
                            str(item.get("type") or "output"),
                        )
                    )
    saved = [f for f in found if f.type != "temp"]
    return saved or found


def history_state(entry: dict[str, Any], model: str) -> bool:
    """Whether a history entry is final; raises when it records a failure."""
    status = entry.get("status") or {}
    if status.get("status_str") == "error":
        for name, data in status.get("messages") or ():
            if name == "execution_error" and isinstance(data, dict):
                raise execution_failed(data, model)
        raise UpstreamError(f"ComfyUI failed running the workflow for '{model}'.")
    return bool(status.get("completed", True)) or bool(entry.get("outputs"))


@dataclass(slots=True)
class Tracker:
    """Follows one prompt's websocket messages and turns them into a percentage."""

    model: str
    total_nodes: int
    on_progress: Callable[[int], None] | None = None
    prompt_id: str | None = None
    started: bool = False
    done: set[str] = field(default_factory=set)
    current: str | None = None
    fraction: float = 0.0

    def percent(self) -> int:
        finished = len(self.done) + self.fraction
        return int(100 * finished / max(1, self.total_nodes))

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.percent())

    def feed(self, message: Any) -> bool:
        """Take one decoded message; True once the prompt has finished."""
        if not isinstance(message, dict) or not isinstance(message.get("data"), dict):
            return False
        kind, data = message.get("type"), message["data"]
        if data.get("prompt_id", self.prompt_id) != self.prompt_id or self.prompt_id is None:
            return False
        if kind == "execution_start":
            self.started = True
        elif kind == "execution_cached":
            self.done.update(str(n) for n in data.get("nodes") or ())
        elif kind == "executing":
            node = data.get("node")
            if node is None:
                return True
            if self.current is not None:
                self.done.add(self.current)
            self.current, self.fraction, self.started = str(node), 0.0, True
        elif kind == "progress":
            maximum = data.get("max") or 0
            if maximum:
                self.fraction = min(1.0, float(data.get("value") or 0) / float(maximum))
        elif kind == "executed":
            self.done.add(str(data.get("node")))
        elif kind == "execution_success":
            return True
        elif kind == "execution_error":
            raise execution_failed(data, self.model)
        elif kind == "execution_interrupted":
            raise UpstreamError(f"ComfyUI interrupted the workflow for '{self.model}'.")
        else:
            return False
        self._report()
        return False
