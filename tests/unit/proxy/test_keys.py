"""API keys: where they are read from and how they are identified."""

from __future__ import annotations

import pytest

from proxy.keys import key_id, presented_key


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer sk-1"}, "sk-1"),
        ({"authorization": "bearer   sk-1  "}, "sk-1"),
        ({"api-key": "sk-azure"}, "sk-azure"),
        ({"authorization": "Basic abc", "api-key": "sk-azure"}, "sk-azure"),
        ({"authorization": "Bearer sk-1", "api-key": "sk-2"}, "sk-1"),
        ({"authorization": "Bearer "}, None),
        ({"authorization": "sk-1"}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], expected: str | None) -> None:
    assert presented_key(headers.get) == expected


def test_key_id_is_stable_short_and_not_the_key() -> None:
    assert key_id("sk-secret") == key_id("sk-secret")
    assert key_id("sk-secret") != key_id("sk-secret2")
    assert "sk-secret" not in key_id("sk-secret")
    assert len(key_id("sk-secret")) == 16
