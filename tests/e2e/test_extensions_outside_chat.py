"""Extensions are for chat completions: elsewhere the ``switchyard`` field never reaches
the upstream, and asking for an extension (header, body field or model suffix) is a 400
that says so, before anything is sent upstream.
"""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import CLIENT_KEY
from tests.support.fake_openai import FakeOpenAI

CALLS = {
    "/v1/completions": lambda c, **kw: c.completions.create(prompt="Once", max_tokens=4, **kw),
    "/v1/embeddings": lambda c, **kw: c.embeddings.create(input="hello", **kw),
}
MODELS = {"/v1/completions": "gpt-test", "/v1/embeddings": "embed-test"}


@pytest.mark.parametrize("path", CALLS)
def test_the_switchyard_field_is_removed_before_the_upstream(
    client: openai.OpenAI, fake: FakeOpenAI, path: str
) -> None:
    CALLS[path](client, model=MODELS[path], extra_body={"switchyard": {"variables": {"a": "b"}}})
    sent = fake.last(path).body
    assert "switchyard" not in sent
    assert sent["model"] in ("upstream-gpt", "upstream-embed")


#: How the extension is asked for, and which extension that is.
ASKED: list[tuple[str, dict[str, Any], str]] = [
    ("header", {"extra_headers": {"X-Switchyard-Session": "s1"}}, "session"),
    ("body", {"extra_body": {"switchyard": {"persona": "editor"}}}, "persona"),
    ("suffix", {"model_suffix": "+rag:docs"}, "rag"),
    ("header", {"extra_headers": {"X-Switchyard-Tools": "web_fetch"}}, "tools"),
    ("bare persona", {"model": "persona:editor"}, "persona"),
]


WAV = ("a.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ")
PNG = ("a.png", b"\x89PNG\r\n\x1a\n")
#: The multipart routes, called as the SDK sends them (extra_body fields are flattened
#: into ``switchyard[name]`` form parts).
FORM_CALLS = {
    "/v1/audio/transcriptions": lambda c, **kw: c.audio.transcriptions.create(file=WAV, **kw),
    "/v1/audio/translations": lambda c, **kw: c.audio.translations.create(file=WAV, **kw),
    "/v1/images/edits": lambda c, **kw: c.images.edit(image=PNG, prompt="x", **kw),
    "/v1/images/variations": lambda c, **kw: c.images.create_variation(image=PNG, **kw),
}


EVERY_CALL = {**CALLS, **FORM_CALLS}


@pytest.mark.parametrize("path", EVERY_CALL)
@pytest.mark.parametrize(("way", "options", "extension"), ASKED)
def test_asking_for_an_extension_outside_chat_is_a_400_saying_so(
    client: openai.OpenAI,
    fake: FakeOpenAI,
    path: str,
    way: str,
    options: dict[str, Any],
    extension: str,
) -> None:
    options = dict(options)
    model = options.pop("model", MODELS.get(path, "gpt-test") + options.pop("model_suffix", ""))
    with pytest.raises(openai.BadRequestError) as caught:
        EVERY_CALL[path](client, model=model, **options)
    assert caught.value.status_code == 400
    assert caught.value.body == {
        "message": f"The '{extension}' extension works with /v1/chat/completions only; "
        f"{path} cannot use it (asked for by a header, the 'switchyard' field or the "
        "model name).",
        "type": "invalid_request_error",
        "param": extension,
        "code": None,
    }
    assert fake.received() == []


@pytest.mark.parametrize(
    ("field", "status", "param"),
    [
        ('{"rag": ["docs"]}', 400, "rag"),
        ("not json", 400, "switchyard"),
        ("[1]", 400, "switchyard"),
    ],
)
def test_a_switchyard_form_field_as_json_is_read_like_the_body_field(
    raw: httpx.Client, fake: FakeOpenAI, field: str, status: int, param: str
) -> None:
    reply = raw.post(
        "/v1/audio/transcriptions",
        data={"model": "gpt-test", "switchyard": field},
        files={"file": WAV},
        headers={"Authorization": f"Bearer {CLIENT_KEY}"},
    )
    assert reply.status_code == status
    assert reply.json()["error"]["param"] == param
    assert fake.received() == []
