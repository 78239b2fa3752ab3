"""What the semantic cache compares by similarity, and what must match exactly."""

from __future__ import annotations

from typing import Any

from proxy.cache.semantic import context_digest, question


def _asking(*parts: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": list(parts)}]}


def _image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


TEXT = {"type": "text", "text": "What is in this picture?"}


def _digest(body: dict[str, Any]) -> bytes:
    asked = question("chat", body)
    assert asked is not None
    return context_digest("chat", "m", asked[1], [])


def test_the_same_words_about_another_picture_are_another_context() -> None:
    cat, dog = (
        _asking(TEXT, _image("https://x/cat.png")),
        _asking(TEXT, _image("https://x/dog.png")),
    )
    assert question("chat", cat)[0] == question("chat", dog)[0] == TEXT["text"]  # type: ignore[index]
    assert _digest(cat) != _digest(dog)


def test_text_alone_is_the_same_context_however_it_is_worded() -> None:
    one = {"model": "m", "messages": [{"role": "user", "content": "capital of France?"}]}
    other = _asking({"type": "text", "text": "Which city is France's capital?"})
    assert _digest(one) == _digest(other)
    assert question("chat", other)[0] == "Which city is France's capital?"  # type: ignore[index]


def test_earlier_turns_are_part_of_the_context() -> None:
    base = {"role": "user", "content": "and Spain?"}
    first = {"model": "m", "messages": [{"role": "user", "content": "capital of France"}, base]}
    second = {"model": "m", "messages": [{"role": "user", "content": "currency of France"}, base]}
    assert _digest(first) != _digest(second)
