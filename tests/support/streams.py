"""A streamed chat completion read on a background thread through the official
``openai`` package, so that a test can act (reload, signal, stop) while it is in flight."""

from __future__ import annotations

import threading
from typing import Any

import openai


class BackgroundStream:
    """``client.chat.completions.create(..., stream=True)`` read on a thread: ``pieces``
    holds the content deltas received so far; ``join`` waits for the end."""

    def __init__(self, client: openai.OpenAI, model: str, messages: list[dict[str, Any]]) -> None:
        self.pieces: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(client, model, messages))
        self._thread.start()

    def _read(self, client: openai.OpenAI, model: str, messages: list[dict[str, Any]]) -> None:
        stream = client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            stream=True,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                self.pieces.append(chunk.choices[0].delta.content)

    def join(self, timeout: float = 30) -> str:
        """Wait for the stream to end (at most ``timeout`` s); the whole text read."""
        self._thread.join(timeout)
        return "".join(self.pieces)
