"""Cache keys: what must and must not change them."""

from __future__ import annotations

from typing import Any

from extensions.activation import Activation
from proxy.cache.keys import cache_key

BODY: dict[str, Any] = {
    "model": "m",
    "messages": [{"role": "user", "content": "hi", "name": "a"}],
    "temperature": 0.5,
    "response_format": {"type": "json_schema", "json_schema": {"b": 1, "a": 2}},
}


def key(body: dict[str, Any] = BODY, **kw: Any) -> str:
    fields: dict[str, Any] = {"team_id": "team_a", "route": "chat", "model": "m", "body": body}
    return cache_key(**{**fields, **kw})


def test_stream_stream_options_and_user_do_not_change_the_key() -> None:
    delivered = {
        **BODY,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "someone-else",
    }
    assert key(delivered) == key(BODY)


def test_the_order_of_keys_at_any_level_does_not_change_the_key() -> None:
    reordered = {
        "response_format": {"json_schema": {"a": 2, "b": 1}, "type": "json_schema"},
        "temperature": 0.5,
        "messages": [{"name": "a", "content": "hi", "role": "user"}],
        "model": "m",
    }
    assert key(reordered) == key(BODY)


def test_what_changes_the_answer_changes_the_key() -> None:
    base = key()
    assert key({**BODY, "temperature": 0.6}) != base
    assert key({**BODY, "messages": [{"role": "user", "content": "hi!", "name": "a"}]}) != base
    # The order of messages is the conversation: it matters.
    two = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert key({**BODY, "messages": two}) != key({**BODY, "messages": two[::-1]})
    assert key(model="other") != base
    assert key(route="completions") != base


def test_another_team_gets_another_key() -> None:
    assert key(team_id="team_b") != key(team_id="team_a")


def test_extensions_and_their_activation_change_the_key() -> None:
    plain = key()
    persona = key(extensions=["persona"], activation=Activation(persona="editor"))
    assert persona != plain
    assert key(extensions=["persona"], activation=Activation(persona="critic")) != persona
    assert key(extensions=["persona", "rag"], activation=Activation(persona="editor")) != persona
    # The names are a set: their order does not matter.
    both = Activation(persona="e", rag=["docs"])
    assert key(extensions=["rag", "persona"], activation=both) == key(
        extensions=["persona", "rag"], activation=both
    )
