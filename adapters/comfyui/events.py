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

from proxy.errors import InvalidRequest, SwitchyardError, UpstreamError

#: ``code`` of the errors that carry ComfyUI's own message.
NODE_ERROR = "comfyui_node_error"
EXECUTION_ERROR = "comfyui_execution_error"
#: ``code`` of the error for a workflow naming a file (a checkpoint) the server lacks.
MISSING_FILE = "comfyui_missing_file"


@dataclass(frozen=True, slots=True)
class OutputFile:
    node: str
    filename: str
    subfolder: str
    type: str
    animated: bool = False
    """The node flagged its output ``animated`` (SaveAnimatedPNG/WEBP, SaveVideo)."""

    @property
    def content_type(self) -> str:
        guessed, _ = mimetypes.guess_type(self.filename)
        if self.animated and guessed == "image/png":
            return "image/apng"
        return guessed or "application/octet-stream"

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")

    @property
    def is_video(self) -> bool:
        """A video file, or an animation (animated PNG or WEBP, or a GIF)."""
        content_type = self.content_type
        return content_type.startswith("video/") or self.animated or content_type == "image/gif"


def _missing_value(item: dict[str, Any]) -> tuple[str, str] | None:
    """``(input, value)`` of a ``value_not_in_list`` error, from ``extra_info`` (or, on
    servers that send none, from ``details``: ``"ckpt_name: 'x.safetensors' not in [...]"``)."""
    if item.get("type") != "value_not_in_list":
        return None
    extra = item.get("extra_info")
    if isinstance(extra, dict) and "input_name" in extra and "received_value" in extra:
        return str(extra["input_name"]), str(extra["received_value"])
    name, _, rest = str(item.get("details") or "").partition(":")
    value = rest.rsplit(" not in ", 1)[0].strip().strip("'")
    return (name.strip(), value) if name and value else None


def rejected(
    body: Any, model: str, request_inputs: frozenset[tuple[str, str]] = frozenset()
) -> SwitchyardError:
    """The ``/prompt`` 400 answer (``error`` and ``node_errors``) as one readable error.

    A value the server does not offer (``value_not_in_list``) in an input that the
    request did not fill (``request_inputs``: ``(node id, input)`` pairs) is the
    deployment's fault, not the client's: a checkpoint or other model file the server
    lacks. That is a 503 naming the node and the missing value (never the server's list
    of files); everything else is the client's 400.
    """
    node_errors = body.get("node_errors") if isinstance(body, dict) else None
    missing: list[str] = []
    for node_id, info in (node_errors or {}).items():
        if not isinstance(info, dict):
            continue
        for item in info.get("errors") or ():
            found = _missing_value(item) if isinstance(item, dict) else None
            if found is not None and (str(node_id), found[0]) not in request_inputs:
                missing.append(
                    f"node {node_id} ({info.get('class_type', '?')}) needs {found[0]} "
                    f"'{found[1]}', which the server does not have"
                )
    if missing:
        return UpstreamError(
            f"ComfyUI cannot run the workflow for '{model}': {'; '.join(missing)}.",
            code=MISSING_FILE,
            status=503,
        )
    parts: list[str] = []
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        head = str(error.get("message") or "invalid prompt")
        details = error.get("details")
        parts.append(f"{head}: {details}" if details else head)
    elif isinstance(error, str):
        parts.append(error)
    for node_id, info in (node_errors or {}).items():
        if not isinstance(info, dict):
            continue
        for item in info.get("errors") or ():
            text = str(item.get("message", "error"))
            found = _missing_value(item)
            if found is not None:  # without the server's list of what it has
                text = f"{text}: {found[0]} '{found[1]}'"
            elif item.get("details"):
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
    counts. A node's ``animated: [true]`` (SaveAnimatedPNG, SaveAnimatedWEBP, SaveVideo)
    marks its files as animations. Previews (``type: temp``) count only when nothing
    was saved for real.
    """
    outputs = entry.get("outputs") or {}
    found: list[OutputFile] = []
    for node_id in wanted or tuple(outputs):
        output = outputs.get(node_id) or {}
        flags = output.get("animated")
        animated = isinstance(flags, list) and any(flag is True for flag in flags)
        for items in output.values():
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
                            animated,
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
        """Take one decoded message; True once the prompt has finished.

        The end is ``executing`` with ``node: null``, which ComfyUI sends after writing
        the history; ``execution_success`` comes before the history exists, so it is
        not the end (reading the history then finds nothing yet)."""
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
        elif kind == "execution_error":
            raise execution_failed(data, self.model)
        elif kind == "execution_interrupted":
            raise UpstreamError(f"ComfyUI interrupted the workflow for '{self.model}'.")
        else:
            return False
        self._report()
        return False
