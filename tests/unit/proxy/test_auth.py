"""API keys: where they are read from, how they are compared, how they are identified."""

from __future__ import annotations

import pytest

from proxy.auth import KeyChecker
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


def test_verify_accepts_any_configured_key_and_nothing_else() -> None:
    checker = KeyChecker(["sk-one", "sk-two"])

    assert checker.enabled
    assert checker.verify("sk-one")
    assert checker.verify("sk-two")
    assert not checker.verify("sk-three")
    assert not checker.verify("sk-one ")
    assert not checker.verify("SK-ONE")
    assert not checker.verify("")
    assert not checker.verify(None)


def test_no_keys_means_authentication_is_off() -> None:
    assert not KeyChecker([]).enabled
    assert not KeyChecker([""]).enabled  # an empty env var never opens the door
    assert not KeyChecker([""]).verify("")


def test_key_id_is_stable_short_and_not_the_key() -> None:
    assert key_id("sk-secret") == key_id("sk-secret")
    assert key_id("sk-secret") != key_id("sk-secret2")
    assert "sk-secret" not in key_id("sk-secret")
    assert len(key_id("sk-secret")) == 16
