"""Audio: ``POST /v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/audio/speech``.

Field names follow openai-python's ``types/audio``. Transcriptions and translations are
multipart uploads, decoded into a ``proxy.media.uploads.FormEnvelope``: the text fields
validated into the request Struct (``params``), as sent (``body``, forwarded by
pass-through adapters), and the file, left in the parser's spooled temporary file.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from proxy.schemas.base import UNSET, UnsetType, WireRequest, WireResponse

TranscriptionFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
SpeechFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
Granularity = Literal["word", "segment"]

Temperature = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Speed = Annotated[float, msgspec.Meta(ge=0.25, le=4.0)]

#: Content types of speech output, as OpenAI sends them. ``opus`` is Opus in an Ogg
#: container; ``aac`` is ADTS; ``pcm`` is raw 16-bit little-endian mono at 24 kHz.
SPEECH_MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

#: Sample rate of ``pcm`` output: OpenAI documents 24 kHz, and clients play it at that.
PCM_SAMPLE_RATE = 24000


class TranscriptionRequest(WireRequest):
    model: str
    language: str | UnsetType = UNSET
    """ISO-639-1 code of the spoken language; unset: detected."""
    prompt: str | UnsetType = UNSET
    response_format: TranscriptionFormat = "json"
    temperature: Temperature | UnsetType = UNSET
    timestamp_granularities: list[Granularity] | UnsetType = UNSET
    """``word`` and/or ``segment`` timestamps; only with ``verbose_json``."""
    stream: bool = False


class TranslationRequest(WireRequest):
    model: str
    prompt: str | UnsetType = UNSET
    response_format: TranscriptionFormat = "json"
    temperature: Temperature | UnsetType = UNSET


class VoiceRef(WireRequest):
    """A custom voice object (``{"id": "voice_1234"}``); its id is looked up like a name."""

    id: str


class SpeechRequest(WireRequest):
    model: str
    input: str
    voice: str | VoiceRef
    response_format: SpeechFormat = "mp3"
    speed: Speed = 1.0
    instructions: str | UnsetType = UNSET
    stream_format: Literal["audio", "sse"] = "audio"

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class TranscriptionWord(WireResponse):
    word: str
    start: float
    end: float


class TranscriptionSegment(WireResponse):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


class DurationUsage(WireResponse):
    seconds: float
    type: Literal["duration"] = "duration"


class Transcription(WireResponse):
    """``response_format: json`` (transcriptions and translations)."""

    text: str
    usage: DurationUsage | UnsetType = UNSET


class VerboseTranscription(WireResponse):
    """``response_format: verbose_json``; local adapters always return this, and the
    route renders the other formats from it."""

    task: Literal["transcribe", "translate"]
    language: str
    """The language's English name in lower case (``english``), as OpenAI sends it."""
    duration: float
    text: str
    segments: list[TranscriptionSegment]
    words: list[TranscriptionWord] | UnsetType = UNSET
    usage: DurationUsage | UnsetType = UNSET


class RawBody(msgspec.Struct, frozen=True):
    """A response body already encoded by an upstream (text, srt, vtt), forwarded as is."""

    content: bytes
    media_type: str
