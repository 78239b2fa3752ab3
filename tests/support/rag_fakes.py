"""A deterministic embedder for RAG tests, and an OpenAI-shaped upstream serving it.

``bow_vector`` is a hashed bag of words (stop words dropped, crude plural folding,
L2-normalised): texts that share content words are near each other in cosine terms, so
search relevance can be asserted without a model. The real embedding model
(``smollm2-135m-embed`` through the llama.cpp adapter) is exercised end to end by the
extension tests; these fakes test the RAG machinery itself.

``embeddings_upstream()`` serves ``POST /v1/embeddings`` with these vectors, so e2e tests
configure it as the ``openai`` adapter's upstream and the gateway embeds through its
own router exactly as in production.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.servers import answer_lifespan, read_body, serve_asgi

DIMENSIONS = 256
_STOP = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have",
        "how", "in", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to",
        "was", "were", "what", "when", "where", "which", "who", "why", "will", "with",
        "does", "do", "about", "into",
    }
)  # fmt: skip


def bow_vector(text: str, dimensions: int = DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        if word in _STOP:
            continue
        if len(word) > 3 and word.endswith("s"):
            word = word[:-1]
        vector[zlib.crc32(word.encode()) % dimensions] += 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


async def bow_embed(texts: list[str]) -> list[list[float]]:
    return [bow_vector(t) for t in texts]


class EmbeddingsUpstream:
    """Raw ASGI app: ``POST /v1/embeddings`` -> bag-of-words vectors; counts requests.

    With ``hold_marker`` set, a request with an input containing it is answered only
    for the first ``pass_marked`` such requests; later ones are held, unanswered, until
    their caller disconnects (``held`` and ``abandoned`` count them): a model that is
    slow for as long as a test needs.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.inputs = 0
        self.hold_marker: str | None = None
        self.pass_marked = 0
        self.marked = 0
        self.held = 0
        self.abandoned = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        body = await read_body(receive)
        if scope["path"] != "/v1/embeddings":
            await _reply(send, 404, {"error": {"message": "not found", "type": "invalid"}})
            return
        request = json.loads(body)
        inputs = request["input"] if isinstance(request["input"], list) else [request["input"]]
        marker = self.hold_marker
        if marker is not None and any(marker in str(text) for text in inputs):
            self.marked += 1
            if self.marked > self.pass_marked:
                self.held += 1
                while (await receive())["type"] != "http.disconnect":
                    pass
                self.abandoned += 1
                return
        self.requests += 1
        self.inputs += len(inputs)
        data = [
            {"object": "embedding", "index": i, "embedding": bow_vector(text)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(str(t).split()) for t in inputs)
        await _reply(
            send,
            200,
            {
                "object": "list",
                "data": data,
                "model": request["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )


async def _reply(send: Any, status: int, payload: dict[str, Any]) -> None:
    content = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": content})


@contextmanager
def embeddings_upstream() -> Iterator[tuple[EmbeddingsUpstream, str]]:
    """Serve an ``EmbeddingsUpstream``; yields it and its ``/v1`` base URL."""
    app = EmbeddingsUpstream()
    with serve_asgi(app) as server:
        yield app, f"{server.url}/v1"


def make_pdf(pages: list[str]) -> bytes:
    """A real PDF with one page per string (Helvetica text, one line per ``\\n``), built
    with pypdf's writer; a string that is empty gives a page without text."""
    import io

    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = writer._add_object(
        DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
    )
    for text in pages:
        page = writer.add_blank_page(width=612, height=792)
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): font})}
        )
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
        for line in text.split("\n") if text else []:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(f"({escaped}) Tj T*")
        ops.append("ET")
        stream = DecodedStreamObject()
        stream.set_data("\n".join(ops).encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(stream)
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()
