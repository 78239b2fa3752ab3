"""Voices: what a voice name in a speech request stands for.

A voice is an engine plus that engine's settings. espeak-ng is always there (a Debian
package) and needs no model; piper voices sound far more natural but need a voice file
(``*.onnx`` with its ``*.onnx.json``), which Switchyard never downloads: configure one.
OpenAI's voice names map to distinct espeak-ng voices (accent and variant) so that
client code written for OpenAI gets a working, if robotic, voice for each name.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from pathlib import Path
from typing import Annotated

import msgspec

log = logging.getLogger("switchyard.tts")

Pitch = Annotated[int, msgspec.Meta(ge=0, le=99)]


class EspeakVoice(msgspec.Struct, tag="espeak", tag_field="engine", forbid_unknown_fields=True):
    voice: str = "en-us"
    """An espeak-ng voice (``espeak-ng --voices``), optionally with a variant: ``en-us+f3``."""
    pitch: Pitch | None = None
    """0-99; unset: the voice's own (50)."""
    words_per_minute: int = 175
    """Rate at ``speed: 1.0``; other speeds scale it."""


class PiperVoice(msgspec.Struct, tag="piper", tag_field="engine", forbid_unknown_fields=True):
    model: str
    """Path to the piper voice file (``en_US-lessac-medium.onnx``)."""
    config: str | None = None
    """Path to its JSON config; default: the model path plus ``.json``."""
    speaker: int | None = None
    """Speaker id, for multi-speaker voices."""

    def __post_init__(self) -> None:
        if importlib.util.find_spec("piper") is None:
            raise ValueError(
                "piper voices need the piper-tts package: pip install 'switchyard[piper]'"
            )
        model = Path(self.model).expanduser()
        if not model.is_file():
            raise ValueError(f"piper voice file not found: {model}")
        config = Path(self.config).expanduser() if self.config else Path(f"{model}.json")
        if not config.is_file():
            raise ValueError(f"piper voice config not found: {config}")
        try:
            rate = json.loads(config.read_text(encoding="utf-8"))["audio"]["sample_rate"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(
                f"{config} is not a piper voice config (no audio.sample_rate)"
            ) from None
        if not isinstance(rate, int) or rate <= 0:
            raise ValueError(f"{config}: audio.sample_rate must be a positive integer")
        self.model = str(model)
        self.config = str(config)


Voice = EspeakVoice | PiperVoice

#: OpenAI's built-in voice names, each a different espeak-ng accent or variant.
OPENAI_VOICES: dict[str, EspeakVoice] = {
    "alloy": EspeakVoice(voice="en-us"),
    "ash": EspeakVoice(voice="en-us+m1"),
    "ballad": EspeakVoice(voice="en-gb+m4"),
    "coral": EspeakVoice(voice="en-us+f2"),
    "echo": EspeakVoice(voice="en-us+m3"),
    "fable": EspeakVoice(voice="en-gb-x-rp"),
    "onyx": EspeakVoice(voice="en-us+m7", pitch=35),
    "nova": EspeakVoice(voice="en-us+f3"),
    "sage": EspeakVoice(voice="en-gb+f1"),
    "shimmer": EspeakVoice(voice="en-us+f4"),
    "verse": EspeakVoice(voice="en-us+m2"),
    "marin": EspeakVoice(voice="en-us+f5"),
    "cedar": EspeakVoice(voice="en-us+m6"),
}


class EspeakCatalog(msgspec.Struct):
    """The voices and variants the installed espeak-ng knows, read once at start."""

    voices: frozenset[str] = frozenset()
    variants: frozenset[str] = frozenset()

    def knows(self, name: str) -> bool:
        base, _, variant = name.partition("+")
        return base in self.voices and (not variant or variant in self.variants)


async def _lines(command: list[str]) -> list[str]:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await process.communicate()
    if process.returncode:
        raise OSError(f"{' '.join(command)} exited with {process.returncode}")
    return out.decode("utf-8", "replace").splitlines()[1:]


async def read_catalog(espeak: str) -> EspeakCatalog:
    """Parse ``espeak-ng --voices`` and ``--voices=variant``.

    A line reads ``Pty Language Age/Gender VoiceName File (OtherLanguage Pty)...``; the
    language, the other languages (``fr`` for ``fr-fr``), the voice name and the file
    are all valid ``-v`` arguments. A ``+variant`` is named by its file's name.
    """
    voices: set[str] = set()
    for line in await _lines([espeak, "--voices"]):
        columns = line.split()
        if len(columns) >= 5:
            voices.update((columns[1], columns[3], columns[4]))
            voices.update(c.lstrip("(") for c in columns[5:] if c.startswith("("))
    variants = set()
    for line in await _lines([espeak, "--voices=variant"]):
        columns = line.split()
        if len(columns) >= 5:
            variants.add(columns[4].rpartition("/")[2])
    return EspeakCatalog(voices=frozenset(voices), variants=frozenset(variants))
