"""``/api/tags``, ``/api/show`` and ``/api/ps``: the caller's models in Ollama's shape.

The facts come from the adapters (``Adapter.model_facts``, ``Adapter.local_models``):
a local GGUF model has its format, architecture, size, quantization and metadata; a
remote model has none, so its fields carry honest placeholders (size 0, an empty
family, a digest of its name rather than of any weights).
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from adapters.base import Adapter, Capability, ModelFacts
from proxy.dialects.ollama.answers import timestamp
from proxy.dialects.ollama.translate import listed_name
from proxy.dialects.ollama.wire import (
    ListedModel,
    ModelDetails,
    RunningModel,
    ShowResponse,
)

#: Go's longest duration (what Ollama's ``expires_at`` adds for a model kept forever).
_FOREVER_S = (2**63 - 1) / 1e9


def details(facts: ModelFacts | None) -> ModelDetails:
    if facts is None:
        return ModelDetails()
    family = facts.family
    return ModelDetails(
        format=facts.format,
        family=family,
        families=[family] if family else None,
        parameter_size=facts.parameter_size,
        quantization_level=facts.quantization_level,
    )


def digest(name: str, facts: ModelFacts | None) -> str:
    if facts is not None and facts.digest:
        return facts.digest
    return hashlib.sha256(f"switchyard-model:{name}".encode()).hexdigest()


async def facts_of(adapters: list[Adapter]) -> ModelFacts | None:
    """The first deployment's facts that are known."""
    for adapter in adapters:
        facts = await adapter.model_facts()
        if facts is not None:
            return facts
    return None


def listed(name: str, created: float, facts: ModelFacts | None) -> ListedModel:
    modified = facts.modified_at if facts is not None and facts.modified_at else created
    return ListedModel(
        name=listed_name(name),
        model=listed_name(name),
        modified_at=timestamp(modified),
        size=facts.size_bytes if facts is not None else 0,
        digest=digest(name, facts),
        details=details(facts),
    )


def capabilities(adapters: list[Adapter]) -> list[str]:
    """Ollama's capability names for what the deployments can do (chat models take
    tools: every chat path of the gateway handles them). No deployments: a model an
    extension serves through chat."""
    if not adapters:
        return ["completion", "tools"]
    able = frozenset().union(*(a.capabilities for a in adapters))
    out = []
    if Capability.CHAT in able or Capability.COMPLETIONS in able:
        out.append("completion")
    if Capability.CHAT in able:
        out.append("tools")
    if Capability.EMBEDDINGS in able:
        out.append("embedding")
    return out


def _modelfile(name: str, facts: ModelFacts | None) -> str:
    lines = [f"# Served by Switchyard as '{name}'", f"FROM {name}"]
    if facts is not None and facts.template:
        lines.append(f'TEMPLATE """{facts.template}"""')
    return "\n".join(lines) + "\n"


def show(
    name: str, created: float, adapters: list[Adapter], facts: ModelFacts | None
) -> ShowResponse:
    modified = facts.modified_at if facts is not None and facts.modified_at else created
    info: dict[str, Any] = dict(facts.metadata) if facts is not None else {}
    info.pop("tokenizer.chat_template", None)  # shown as ``template``
    windows = [w for a in adapters if (w := a.context_window) is not None]
    return ShowResponse(
        modelfile=_modelfile(name, facts),
        template=facts.template if facts is not None else "",
        details=details(facts),
        model_info=info,
        capabilities=capabilities(adapters),
        modified_at=timestamp(modified),
        parameters=f"num_ctx {min(windows)}" if windows else "",
    )


def running(adapter: Adapter, facts: ModelFacts | None, now: float) -> list[RunningModel]:
    """The loaded models of one deployment."""
    out = []
    for local in adapter.local_models():
        if not local.loaded:
            continue
        expires = local.expires_in_s
        left = _FOREVER_S if expires is None or math.isinf(expires) else expires
        out.append(
            RunningModel(
                name=listed_name(local.name),
                model=listed_name(local.name),
                size=local.memory_bytes,
                digest=digest(local.name, facts),
                details=details(facts),
                expires_at=timestamp(now + left),
                size_vram=0,
                context_length=adapter.context_window or 0,
            )
        )
    return out


def now() -> float:
    return time.time()
