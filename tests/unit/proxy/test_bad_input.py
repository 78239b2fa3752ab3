"""Bad input that used to be a 500: deep JSON, odd multipart parts, huge echoed values.

The JSON and truncation rules are pure functions; the multipart parser runs inside a
small Litestar app (Litestar's ASGI test client), as the gateway's routes run it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest
from litestar import Litestar, Request, post
from litestar.datastructures import UploadFile
from litestar.testing import TestClient

from proxy.app import error_renderer
from proxy.dialects import DialectMap
from proxy.errors import (
    ECHO_LIMIT,
    MESSAGE_LIMIT,
    InvalidRequest,
    NotFound,
    encode_error,
    shown,
    shown_quoted,
)
from proxy.media.uploads import parse_form
from proxy.schemas.base import MAX_JSON_DEPTH, decode_request
from proxy.schemas.chat import ChatCompletionRequest
from proxy.schemas.tokenize import TokenizeRequest

# ------------------------------------------------------------------ deep JSON


def nested(levels: int) -> bytes:
    """A tokenize body whose ``x`` field adds ``levels`` nested arrays to the top object."""
    return b'{"model":"m","prompt":"hi","x":' + b"[" * levels + b"]" * levels + b"}"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    envelope = decode_request(nested(MAX_JSON_DEPTH - 1), TokenizeRequest)
    assert envelope.params.model == "m"


@pytest.mark.parametrize("levels", [MAX_JSON_DEPTH, 900, 5_000, 200_000])
def test_deeper_nesting_is_a_400(levels: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_request(nested(levels), TokenizeRequest)
    assert caught.value.http_status == 400
    assert caught.value.message == (
        f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep."
    )


def test_deep_objects_inside_messages_are_a_400() -> None:
    content: Any = "hi"
    for _ in range(300):
        content = {"c": content}
    body = {"model": "m", "messages": [{"role": "user", "content": "x", "meta": content}]}
    with pytest.raises(InvalidRequest, match="levels deep"):
        decode_request(json.dumps(body).encode(), ChatCompletionRequest)


def test_many_shallow_brackets_are_not_mistaken_for_depth() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "a"}]}] * 200
    raw = json.dumps({"model": "m", "messages": messages}).encode()
    assert len(decode_request(raw, ChatCompletionRequest).params.messages) == 200


# ------------------------------------------------------------ echoed values


def test_shown_keeps_short_values_and_cuts_long_ones_with_their_length() -> None:
    assert shown("docs") == "docs"
    assert shown("x" * ECHO_LIMIT) == "x" * ECHO_LIMIT
    assert shown("y" * 5_000_000) == "y" * ECHO_LIMIT + "\u2026 (5000000 characters)"


def test_shown_quoted_cuts_the_value_in_a_msgspec_message_and_keeps_the_path() -> None:
    long_role = "w" * 10_000
    body = {"model": "m", "messages": [{"role": long_role, "content": "hi"}]}
    with pytest.raises(InvalidRequest) as caught:
        decode_request(json.dumps(body).encode(), ChatCompletionRequest)
    assert caught.value.message == (
        f"Invalid request: Invalid enum value '{'w' * ECHO_LIMIT}\u2026 (10000 characters)' "
        "- at `$.messages[0].role`"
    )
    assert caught.value.param == "messages[0].role"
    assert shown_quoted("Expected `int`, got `str` - at `$.n`") == (
        "Expected `int`, got `str` - at `$.n`"
    )


def test_every_error_message_is_bounded_whatever_was_put_into_it() -> None:
    error = NotFound("No such thing: " + "z" * 3_000_000)
    assert len(error.message) == MESSAGE_LIMIT + len("\u2026 (3000015 characters)")
    assert error.message.endswith("\u2026 (3000015 characters)")
    assert msgspec.json.decode(encode_error(error))["error"]["message"] == error.message


# ------------------------------------------------------------------ multipart

BOUNDARY = "sweepboundary"
BINARY = bytes(range(256)) * 4


def multipart(*parts: tuple[str, bytes]) -> bytes:
    """A body from ``(Content-Disposition parameters and headers, content)`` parts."""
    out = b""
    for head, content in parts:
        out += f"--{BOUNDARY}\r\nContent-Disposition: form-data; {head}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


@post("/form", status_code=200)
async def echo_form(request: Request[Any, Any, Any]) -> dict[str, Any]:
    form = await parse_form(request)
    again = await request.form()  # Litestar's own accessor returns the same parse
    assert again is not None and list(again.keys()) == list(form.keys())
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            data = await value.read()
            fields[name] = {"filename": value.filename, "sha256": hashlib.sha256(data).hexdigest()}
        else:
            fields[name] = value
    return fields


@pytest.fixture(scope="module")
def client() -> Any:
    app = Litestar([echo_form], exception_handlers={Exception: error_renderer(DialectMap([]))})
    with TestClient(app) as test_client:
        yield test_client


def post_form(client: Any, body: bytes) -> Any:
    return client.post(
        "/form",
        content=body,
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )


def test_a_binary_part_with_an_empty_filename_is_a_file(client: Any) -> None:
    body = multipart(
        ('name="image"; filename=""\r\nContent-Type: application/octet-stream', BINARY),
        ('name="prompt"', "caf\u00e9".encode()),
    )
    response = post_form(client, body)
    assert response.status_code == 200
    assert response.json() == {
        "image": {"filename": "", "sha256": hashlib.sha256(BINARY).hexdigest()},
        "prompt": "caf\u00e9",
    }


def test_binary_content_in_a_text_field_is_a_400_naming_it(client: Any) -> None:
    response = post_form(client, multipart(('name="prompt"', BINARY)))
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "The form field 'prompt' is not valid utf-8 text; "
        "send a file as a part with a filename.",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": None,
    }


def test_an_unknown_charset_is_a_400_naming_the_field(client: Any) -> None:
    body = multipart(('name="prompt"\r\nContent-Type: text/plain; charset=klingon', b"hi"))
    response = post_form(client, body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == (
        "The form field 'prompt' declares an unknown charset 'klingon'."
    )
    assert response.json()["error"]["param"] == "prompt"


def test_a_text_field_in_a_declared_charset_is_decoded(client: Any) -> None:
    body = multipart(('name="prompt"\r\nContent-Type: text/plain; charset=latin-1', b"caf\xe9"))
    response = post_form(client, body)
    assert response.status_code == 200
    assert response.json() == {"prompt": "caf\u00e9"}


def test_a_body_cut_before_its_end_is_a_400(client: Any) -> None:
    body = multipart(('name="prompt"', b"hello"))[:-20]
    response = post_form(client, body)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Invalid multipart/form-data: ")


def test_a_huge_field_name_is_echoed_cut(client: Any) -> None:
    name = "n" * 3000
    response = post_form(client, multipart((f'name="{name}"', BINARY)))
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith(f"The form field '{'n' * ECHO_LIMIT}\u2026 (3000 characters)'")


def test_an_empty_body_is_an_empty_form(client: Any) -> None:
    response = post_form(client, b"")
    assert (response.status_code, response.json()) == (200, {})
