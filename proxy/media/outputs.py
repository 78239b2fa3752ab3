"""What media adapters return: produced files, before the gateway stores or encodes them."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.media.store import StoredMedia


@dataclass(frozen=True, slots=True)
class MediaBlob:
    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class GeneratedImages:
    """Images an adapter produced locally; the images route encodes or stores them."""

    images: list[MediaBlob]
    size: str | None = None
    """``WIDTHxHEIGHT`` produced, when the adapter knows it."""
    revised_prompts: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class VideoOutput:
    """What an adapter's ``create_video`` returns: the stored file and what it holds."""

    media: StoredMedia
    size: str
    """``WIDTHxHEIGHT`` actually produced (the workflow's own when the request had none)."""
    seconds: str
