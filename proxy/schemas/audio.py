"""Audio: ``POST /v1/audio/transcriptions``, ``/v1/audio/translations``, ``/v1/audio/speech``.

Field names follow openai-python's ``types/audio``. Transcriptions and translations are
multipart uploads: their text fields are validated into a Struct (``AudioUpload.params``)
while every field the client sent is kept (``AudioUpload.fields``) so that a remote
upstream receives parameters Switchyard does not know. The uploaded file stays in the
parser's spooled temporary file (on disk above 1 MiB) and is never read whole into
memory by the gateway itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Annotated, Generic, Literal, TypeVar

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


@dataclass(slots=True)
class AudioFile:
    """The uploaded file: a binary file object positioned anywhere (readers seek first)."""

    filename: str
    content_type: str
    file: IO[bytes]
    size: int

    def close(self) -> None:
        self.file.close()


T = TypeVar("T", bound=WireRequest)


class AudioUpload(Generic[T]):
    """A decoded multipart request: typed ``params``, the raw text ``fields``, the ``file``."""

    __slots__ = ("fields", "file", "params")

    def __init__(self, params: T, fields: list[tuple[str, str]], file: AudioFile) -> None:
        self.params = params
        self.fields = fields
        self.file = file

    @property
    def model(self) -> str:
        return self.params.model  # type: ignore[attr-defined, no-any-return]

    def upstream_fields(self, upstream_model: str) -> list[tuple[str, str]]:
        """The text fields an OpenAI-compatible upstream receives, with its model id."""
        return [(k, upstream_model if k == "model" else v) for k, v in self.fields]
