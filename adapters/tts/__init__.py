"""Local text-to-speech: espeak-ng always, piper voices when a voice file is configured.

Audio is streamed as it is synthesized. espeak-ng writes WAV to a pipe; ``wav`` output
at a speed espeak-ng can reach by itself goes to the client straight from it, every
other format through ``ffmpeg`` (joined by an OS pipe, see ``pipeline``), which encodes
mp3, opus (Ogg), aac (ADTS), flac, wav or raw 24 kHz pcm. Piper voices run in process
and feed ffmpeg sentence by sentence.

A voice name is resolved in this order: the deployment's ``voices``; OpenAI's built-in
names (``alloy``, ``echo``, ...), each an espeak-ng voice unless ``voice`` sets one voice
for all of them; then, with ``espeak_voices``, any voice the installed espeak-ng knows
(``fr``, ``en-gb+f3``). Anything else is a 400 naming the voice.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from adapters.base import Adapter, CallStats, Capability, DeploymentConfig, Resources
from adapters.tts.pipeline import ffmpeg_encoder, stream_chain
from adapters.tts.piper_engine import PiperVoices
from adapters.tts.voices import (
    OPENAI_VOICES,
    EspeakCatalog,
    EspeakVoice,
    PiperVoice,
    Voice,
    read_catalog,
)
from proxy.errors import InvalidRequest, ServiceUnavailable, shown
from proxy.schemas.audio import SpeechRequest
from proxy.schemas.base import Envelope

log = logging.getLogger("switchyard.tts")

#: espeak-ng's documented rate range, in words per minute.
_ESPEAK_MIN_WPM, _ESPEAK_MAX_WPM = 80, 450


class TTSConfig(DeploymentConfig, kw_only=True, forbid_unknown_fields=True):
    voices: dict[str, Voice] = {}
    """Voices by name, added to (or replacing) the built-in ones. Each has an ``engine``:
    ``{engine: espeak, voice: en-gb+f3}`` or ``{engine: piper, model: /voices/x.onnx}``."""
    voice: Voice | None = None
    """One voice for every OpenAI voice name (e.g. a piper voice); unset: each OpenAI
    name has its own espeak-ng voice."""
    espeak_voices: bool = True
    """Also accept any installed espeak-ng voice name (``fr``, ``en-gb+f3``) as a voice."""
    max_input_chars: int = 4096
    """Longest ``input`` accepted (OpenAI's limit)."""
    espeak_command: str = "espeak-ng"
    ffmpeg_command: str = "ffmpeg"


class TTSAdapter(Adapter):
    name = "tts"
    Config = TTSConfig
    capabilities = frozenset({Capability.SPEECH})
    readiness_is_checked = True
    holds_models_in_process = True

    def __init__(self, config: DeploymentConfig, resources: Resources) -> None:
        super().__init__(config, resources)
        assert isinstance(config, TTSConfig)
        self.cfg = config
        self._catalog: EspeakCatalog | None = None
        self._piper = PiperVoices()
        self._problems: list[str] = []

    @property
    def label(self) -> str:
        return f"{self.name}:{self.config.upstream_model}"

    def _configured(self) -> list[Voice]:
        return [*self.cfg.voices.values(), *([self.cfg.voice] if self.cfg.voice else [])]

    async def start(self) -> None:
        self._problems = []
        espeak = shutil.which(self.cfg.espeak_command)
        if espeak is None:
            self._problems.append(f"{self.cfg.espeak_command} is not installed")
            self._catalog = EspeakCatalog()
        else:
            try:
                self._catalog = await read_catalog(espeak)
            except OSError as exc:
                self._problems.append(f"cannot list espeak-ng voices: {exc}")
                self._catalog = EspeakCatalog()
        if shutil.which(self.cfg.ffmpeg_command) is None:
            self._problems.append(f"{self.cfg.ffmpeg_command} is not installed (only wav works)")
        catalog = self._catalog
        for voice in self._configured():
            if isinstance(voice, EspeakVoice) and catalog.voices and not catalog.knows(voice.voice):
                self._problems.append(f"espeak-ng has no voice '{voice.voice}'")
        try:
            await self._piper.load([v for v in self._configured() if isinstance(v, PiperVoice)])
        except Exception as exc:
            self._problems.append(f"cannot load a piper voice: {exc}")
        for problem in self._problems:
            log.warning("%s: %s", self.label, problem)

    def readiness(self) -> tuple[bool, str]:
        if self._catalog is None:
            return False, "starting"
        return (False, "; ".join(self._problems)) if self._problems else (True, "ok")

    def voice_names(self) -> list[str]:
        return sorted({*OPENAI_VOICES, *self.cfg.voices})

    def resolve(self, name: str) -> Voice:
        if name in self.cfg.voices:
            return self.cfg.voices[name]
        if name in OPENAI_VOICES:
            return self.cfg.voice or OPENAI_VOICES[name]
        if self.cfg.espeak_voices and self._catalog and self._catalog.knows(name):
            return EspeakVoice(voice=name)
        hint = (
            " or any espeak-ng voice such as 'en-gb' or 'en-us+f3'"
            if self.cfg.espeak_voices
            else ""
        )
        raise InvalidRequest(
            f"Unknown voice '{shown(name)}'. Model '{self.config.name}' has the voices "
            f"{', '.join(self.voice_names())}{hint}.",
            param="voice",
        )

    def _check(self, params: SpeechRequest) -> str:
        if params.stream_format != "audio":
            raise InvalidRequest(
                f"Model '{self.config.name}' streams audio bytes only; "
                "stream_format 'sse' is not supported.",
                param="stream_format",
            )
        text = params.input.strip()
        if not text:
            raise InvalidRequest("'input' is empty: there is nothing to say.", param="input")
        if len(text) > self.cfg.max_input_chars:
            raise InvalidRequest(
                f"'input' has {len(text)} characters; the limit is {self.cfg.max_input_chars}.",
                param="input",
            )
        return text

    def _espeak_chain(
        self, voice: EspeakVoice, text: str, speed: float, fmt: str
    ) -> list[list[str]]:
        target = voice.words_per_minute * speed
        wpm = round(min(max(target, _ESPEAK_MIN_WPM), _ESPEAK_MAX_WPM))
        tempo = target / wpm
        command = [self.cfg.espeak_command, "-v", voice.voice, "-s", str(wpm), "-b", "1"]
        if voice.pitch is not None:
            command += ["-p", str(voice.pitch)]
        command += ["--stdout", "--stdin"]
        if fmt == "wav" and abs(tempo - 1.0) <= 0.005:
            return [command]
        return [command, ffmpeg_encoder(self.cfg.ffmpeg_command, ["-f", "wav"], fmt, tempo)]

    async def speech(
        self, request: Envelope[SpeechRequest], stats: CallStats
    ) -> AsyncIterator[bytes]:
        params = request.params
        text = self._check(params)
        if self._catalog is None:
            await self.start()
        voice = self.resolve(params.voice_name)
        fmt = params.response_format
        started = time.perf_counter()
        if isinstance(voice, EspeakVoice):
            chunks = stream_chain(self._espeak_chain(voice, text, params.speed, fmt), text.encode())
        else:
            if not self._piper.loaded(voice):
                try:
                    await self._piper.load([voice])
                except Exception as exc:
                    raise ServiceUnavailable(f"Cannot load the piper voice: {exc}") from None
            raw = ["-f", "s16le", "-ar", str(self._piper.sample_rate(voice)), "-ac", "1"]
            chunks = stream_chain(
                [ffmpeg_encoder(self.cfg.ffmpeg_command, raw, fmt, 1.0)],
                self._piper.pcm(voice, text, params.speed),
            )
        first = True
        async with aclosing(chunks):
            async for chunk in chunks:
                if first:
                    stats.upstream_s += time.perf_counter() - started
                    first = False
                yield chunk
