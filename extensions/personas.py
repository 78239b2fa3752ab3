"""Agent personas: a system prompt, a default model and sampling defaults, by name.

Persona files are YAML, one per persona, in ``personas.dir`` (the four bundled
examples — writer, editor, character, rater — when no directory is configured).
Values the request sets itself always win over the persona's defaults.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from extensions.activation import Activation
from extensions.base import ChatCall, Extension, ExtensionServices
from proxy.errors import InvalidRequest, shown
from proxy.schemas.base import UNSET
from proxy.settings import config_path

log = logging.getLogger("switchyard.personas")

BUNDLED_DIR = Path(__file__).parent / "persona_examples"


class Persona(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    system_prompt: str
    description: str = ""
    model: str | None = None
    """Model used when the request names only the persona (``model: persona:NAME``)."""
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    tools: list[str] = []
    rag: list[str] = []
    response_format: dict[str, Any] | None = None


def load_personas(directory: Path) -> dict[str, Persona]:
    """Every ``*.yaml``/``*.yml`` in ``directory``; a broken file is a startup error."""
    personas: dict[str, Persona] = {}
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for file in files:
        try:
            persona = msgspec.convert(yaml.safe_load(file.read_text(encoding="utf-8")), Persona)
        except (yaml.YAMLError, msgspec.ValidationError, OSError) as exc:
            raise ValueError(f"persona file {file}: {exc}") from None
        personas[persona.name] = persona
    return personas


class PersonasConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``personas:`` config section."""

    dir: str | None = None
    """Directory of persona YAML files; unset: the four bundled examples."""
    default_model: str | None = "smollm2-135m"
    """Model for a request that names only a persona whose file sets no model."""

    def __post_init__(self) -> None:
        if self.dir is not None:
            self.dir = str(config_path(self.dir))


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def render_prompt(template: str, variables: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders the request supplied; others read as not provided."""
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), "(not provided)"), template)


class PersonaExtension(Extension):
    name = "persona"
    order = 10

    def __init__(self, services: ExtensionServices) -> None:
        super().__init__(services)
        config = services.settings.section("personas", PersonasConfig)
        directory = Path(config.dir).expanduser() if config.dir else BUNDLED_DIR
        self.default_model = config.default_model
        self.personas = load_personas(directory)
        log.info("loaded %d personas from %s", len(self.personas), directory)

    def active(self, activation: Activation) -> bool:
        return activation.persona is not None

    def model_ids(self) -> list[str]:
        return [f"persona:{name}" for name in sorted(self.personas)]

    def _persona(self, call: ChatCall) -> Persona:
        name = call.activation.persona or ""
        persona = self.personas.get(name)
        if persona is None:
            known = ", ".join(sorted(self.personas)) or "none"
            raise InvalidRequest(
                f"Unknown persona '{shown(name)}' (known: {known}).", param="persona"
            )
        return persona

    async def validate(self, call: ChatCall) -> None:
        persona = self._persona(call)
        activation = call.activation
        activation.tools = activation.tools or list(persona.tools)
        activation.rag = activation.rag or list(persona.rag)
        if not call.model:  # chosen here, so limits are checked before any extension works
            call.model = persona.model or self.default_model or ""

    async def before_request(self, call: ChatCall) -> None:
        persona = self._persona(call)
        prompt = render_prompt(persona.system_prompt, call.activation.variables)
        call.set_messages([{"role": "system", "content": prompt}, *call.messages])
        params = call.envelope.params
        defaults: dict[str, Any] = {}
        if params.temperature is UNSET and persona.temperature is not None:
            defaults["temperature"] = persona.temperature
        if params.top_p is UNSET and persona.top_p is not None:
            defaults["top_p"] = persona.top_p
        sets_length = params.max_tokens is not UNSET or params.max_completion_tokens is not UNSET
        if not sets_length and persona.max_tokens is not None:
            defaults["max_tokens"] = persona.max_tokens
        if params.response_format is UNSET and persona.response_format is not None:
            defaults["response_format"] = persona.response_format
        if defaults:
            call.envelope.update(**defaults)
