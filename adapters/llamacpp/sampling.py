"""Request parameters -> a validated ``Sampling``; a bad value is a 400 naming it.

Beside the OpenAI parameters, the llama.cpp-server extensions ``top_k``, ``min_p`` and
``repeat_penalty`` are read from the request body when a client sends them.
"""

from __future__ import annotations

from typing import Any

from adapters.llamacpp.config import LlamaCppConfig
from adapters.llamacpp.engine import Sampling
from proxy.errors import ContextLengthExceeded, InvalidRequest, shown
from proxy.schemas.base import UNSET


def given(value: Any) -> bool:
    return value is not UNSET and value is not None


def _number(value: Any, name: str, low: float, high: float, default: float) -> float:
    if not given(value):
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"'{name}' must be a number.", param=name)
    if not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be between {low} and {high}, got {value}.", param=name)
    return float(value)


def stop_list(stop: Any) -> list[str]:
    if not given(stop):
        return []
    stops = [stop] if isinstance(stop, str) else list(stop)
    if any(not s for s in stops):
        raise InvalidRequest("'stop' must not contain empty strings.", param="stop")
    return stops


def check_n(n: Any) -> None:
    if given(n) and n != 1:
        raise InvalidRequest(
            "Local models generate one choice per request; 'n' must be 1.", param="n"
        )


def logit_bias(raw: Any, n_vocab: int) -> dict[int, float]:
    if not given(raw):
        return {}
    bias: dict[int, float] = {}
    for key, value in raw.items():
        try:
            token = int(key)
        except ValueError:
            raise InvalidRequest(
                f"logit_bias key '{shown(key)}' is not a token id.", param="logit_bias"
            ) from None
        if not 0 <= token < n_vocab:
            raise InvalidRequest(
                f"logit_bias token {token} is outside the vocabulary (0..{n_vocab - 1}).",
                param="logit_bias",
            )
        if not -100 <= value <= 100:
            raise InvalidRequest(
                "logit_bias values must be between -100 and 100.", param="logit_bias"
            )
        bias[token] = float("-inf") if value <= -100 else float(value)
    return bias


def sampling_from(
    params: Any, body: dict[str, Any], config: LlamaCppConfig, n_vocab: int
) -> Sampling:
    """The sampling settings of a chat or completion request."""
    seed = params.seed
    if given(seed) and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidRequest("'seed' must be an integer.", param="seed")
    top_k = body.get("top_k", config.top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise InvalidRequest("'top_k' must be a non-negative integer.", param="top_k")
    top_p = _number(params.top_p, "top_p", 0.0, 1.0, config.top_p)
    if top_p <= 0:
        raise InvalidRequest("'top_p' must be greater than 0.", param="top_p")
    return Sampling(
        temperature=_number(params.temperature, "temperature", 0.0, 2.0, config.temperature),
        top_p=top_p,
        top_k=top_k,
        min_p=_number(body.get("min_p"), "min_p", 0.0, 1.0, config.min_p),
        repeat_penalty=_number(
            body.get("repeat_penalty"), "repeat_penalty", 0.0, 10.0, config.repeat_penalty
        ),
        presence_penalty=_number(params.presence_penalty, "presence_penalty", -2.0, 2.0, 0.0),
        frequency_penalty=_number(params.frequency_penalty, "frequency_penalty", -2.0, 2.0, 0.0),
        seed=seed if given(seed) else None,
        logit_bias=logit_bias(params.logit_bias, n_vocab),
    )


def max_tokens_for(
    requested: Any, name: str, prompt_tokens: int, n_ctx: int, prompt_param: str
) -> int:
    """The completion budget; a request that cannot fit the context window is a 400."""
    if given(requested) and (
        isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
    ):
        raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
    if prompt_tokens >= n_ctx:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {n_ctx} tokens. However, your prompt is "
            f"{prompt_tokens} tokens, which leaves no room for a completion.",
            param=prompt_param,
        )
    room = n_ctx - prompt_tokens
    if not given(requested):
        return room
    if requested > room:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {n_ctx} tokens. However, you requested "
            f"{prompt_tokens + requested} tokens ({prompt_tokens} in the prompt, {requested} "
            f"for the completion). Please reduce the prompt or '{name}'.",
            param=name,
        )
    return int(requested)
