"""Cache keys: what makes two requests the same question.

The key is a SHA-256 over the team, the route, the model, the request body in a canonical
form (keys sorted at every level, encoded by msgspec) without the fields that change how
an answer is delivered or who asked (``stream``, ``stream_options``, ``user``), and the
active extensions with the activation that changes the answer. The team is part of the
key, so one team's entries can never answer another's requests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

IGNORED_FIELDS = frozenset({"stream", "stream_options", "user"})
"""Body fields that do not change the answer (a streamed answer is the same answer)."""

_canonical = msgspec.json.Encoder(order="sorted").encode


def canonical_body(body: Mapping[str, Any]) -> bytes:
    """``body`` without ``IGNORED_FIELDS``, keys sorted at every level."""
    return _canonical({k: v for k, v in body.items() if k not in IGNORED_FIELDS})


def cache_key(
    *,
    team_id: str,
    route: str,
    model: str,
    body: Mapping[str, Any],
    extensions: Iterable[str] = (),
    activation: Any = None,
) -> str:
    """The hex digest naming one answer (see the module docstring)."""
    digest = hashlib.sha256()
    for part in (team_id, route, model):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(canonical_body(body))
    digest.update(b"\0")
    digest.update(_canonical(sorted(extensions)))
    digest.update(b"\0")
    digest.update(_canonical(msgspec.to_builtins(activation)))
    return digest.hexdigest()
