"""Server-side conversations: prior turns prepended, the new turn stored after success.

The client sends only its new turn with ``X-Switchyard-Session: <id>``. Before the
request, the stored history is inserted after any leading system messages (a
persona's) and before the client's messages; when the whole no longer fits the model's
context budget, the oldest turns are dropped first, system messages never. After a
successful response (streamed or not) the client's new messages and the answer are
appended; a failed request stores nothing.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from extensions.activation import Activation
from extensions.base import ChatCall, Extension, ExtensionServices
from extensions.sessions.config import SessionsConfig
from proxy.context import owner_of
from proxy.errors import InvalidRequest
from proxy.schemas.base import UNSET
from proxy.settings import Settings
from proxy.state import import_legacy_sessions
from proxy.state.repositories import SessionRepository

log = logging.getLogger("switchyard.sessions")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_SYSTEM_ROLES = ("system", "developer")
_MESSAGE_OVERHEAD_TOKENS = 4


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    calls = message.get("tool_calls") or ()
    arguments = " ".join(str((c.get("function") or {}).get("arguments", "")) for c in calls)
    return f"{content or ''} {arguments}".strip()


class SessionExtension(Extension):
    name = "session"
    order = 20

    def __init__(self, services: ExtensionServices) -> None:
        super().__init__(services)
        self.config = services.settings.section("sessions", SessionsConfig)

    def keep_on_reload(self, settings: Settings) -> bool:
        return settings.section("sessions", SessionsConfig) == self.config

    @property
    def store(self) -> SessionRepository:
        """Conversations live in the state store (SQLite or PostgreSQL), owned by key."""
        return self.services.store.sessions  # type: ignore[no-any-return]

    def legacy_file(self) -> Path:
        configured = self.config.database
        if configured:
            return Path(configured).expanduser()
        return Path(self.services.settings.server.data_dir) / "sessions.sqlite3"

    async def start(self) -> None:
        """Copy the sessions of the file they lived in before the state layer, once."""
        old = self.legacy_file()
        copied = await import_legacy_sessions(self.services.store, old)
        if copied:
            log.info("copied %d session(s) from %s into the state store", copied, old)

    def active(self, activation: Activation) -> bool:
        return activation.session is not None

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        from extensions.sessions.routes import session_handlers

        return session_handlers()

    async def validate(self, call: ChatCall) -> None:
        if not _VALID_ID.match(call.activation.session or ""):
            raise InvalidRequest(
                "Session ids are 1-128 characters of letters, digits and . _ : @ -",
                param="session",
            )

    def _budget(self, call: ChatCall) -> int:
        window = self.services.context_window(call.model) or self.config.max_context_tokens
        params = call.envelope.params
        answer = next(
            (
                v
                for v in (params.max_completion_tokens, params.max_tokens)
                if v not in (UNSET, None)
            ),
            self.config.reserve_tokens,
        )
        return max(0, window - int(answer))  # type: ignore[call-overload]

    async def _tokens(self, model: str, message: dict[str, Any]) -> int:
        count = await self.services.count_tokens(model, _text_of(message))
        return count + _MESSAGE_OVERHEAD_TOKENS

    async def before_request(self, call: ChatCall) -> None:
        owner, session = owner_of(call.key_id), call.activation.session or ""
        history = await self.store.history(owner, session)
        added = len(call.messages) - len(call.client_messages)
        prefix, current = call.messages[:added], call.messages[added:]
        # The client's system message is stored once, with the first turn.
        has_system = any(m.get("role") in _SYSTEM_ROLES for m in history)
        call.scratch["session.new"] = [
            m for m in call.client_messages if m.get("role") not in _SYSTEM_ROLES or not has_system
        ]
        kept = await self._trim(call, prefix, history, current)
        call.set_messages([*prefix, *kept, *current])

    async def _trim(
        self,
        call: ChatCall,
        prefix: list[dict[str, Any]],
        history: list[dict[str, Any]],
        current: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Drop the oldest non-system history messages until everything fits the budget."""
        budget = self._budget(call)
        fixed = [*prefix, *current]
        used = sum([await self._tokens(call.model, m) for m in fixed])
        costs = [await self._tokens(call.model, m) for m in history]
        used += sum(costs)
        drop: set[int] = set()
        for index, message in enumerate(history):
            if used <= budget:
                break
            if message.get("role") in _SYSTEM_ROLES:
                continue
            drop.add(index)
            used -= costs[index]
        # A tool result without the assistant turn that asked for it is invalid: drop it too.
        kept = [m for i, m in enumerate(history) if i not in drop]
        while kept and kept[0].get("role") == "tool":
            kept.pop(0)
        return kept

    async def after_response(self, call: ChatCall, reply: dict[str, Any]) -> None:
        stored = {k: v for k, v in reply.items() if k in ("role", "content", "tool_calls") and v}
        stored.setdefault("role", "assistant")
        stored.setdefault("content", reply.get("content"))
        await self.store.append(
            owner_of(call.key_id),
            call.activation.session or "",
            [*call.scratch.get("session.new", []), stored],
        )
