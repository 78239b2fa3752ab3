"""Piper voices, in process: loaded once, synthesized sentence by sentence in a thread.

piper-tts (an optional dependency) runs the voice's ONNX model with onnxruntime and
yields one chunk of 16-bit mono PCM per sentence; each chunk is handed to the event
loop as soon as it exists, so the first sentence plays while later ones are computed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from adapters.tts.voices import PiperVoice
from proxy.errors import UpstreamError

_END = object()


class PiperVoices:
    """Loaded piper voices by model path (one load per file, shared by voice names)."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    async def load(self, voices: list[PiperVoice]) -> None:
        for voice in voices:
            if voice.model not in self._loaded:
                self._loaded[voice.model] = await asyncio.to_thread(_load, voice)

    def sample_rate(self, voice: PiperVoice) -> int:
        return int(self._loaded[voice.model].config.sample_rate)

    def loaded(self, voice: PiperVoice) -> bool:
        return voice.model in self._loaded

    async def pcm(self, voice: PiperVoice, text: str, speed: float) -> AsyncIterator[bytes]:
        """Raw s16le PCM at ``sample_rate(voice)``, one chunk per sentence."""
        from piper import SynthesisConfig

        engine = self._loaded[voice.model]
        config = SynthesisConfig(
            speaker_id=voice.speaker, length_scale=engine.config.length_scale / speed
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                for chunk in engine.synthesize(text, config):
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk.audio_int16_bytes)
            except Exception as exc:
                error = UpstreamError(f"Speech synthesis with piper failed: {exc}")
                loop.call_soon_threadsafe(queue.put_nowait, error)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = asyncio.create_task(asyncio.to_thread(produce))
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, UpstreamError):
                    raise item
                yield item
        finally:
            stop.set()
            await asyncio.shield(worker)


def _load(voice: PiperVoice) -> Any:
    from piper import PiperVoice as Engine

    return Engine.load(voice.model, config_path=voice.config)
