"""RAG indexing and ingestion against bad input, through the real gateway over HTTP.

Bad paths and globs are 400s, bad entries in the tree are skipped and reported, a
pathological glob does not stall the server, large indexes become jobs, and an upload
whose client leaves stops embedding and frees the collection for other writers.

Embeddings come from ``EmbeddingsUpstream`` (tests/support/rag_fakes.py) behind the
``openai`` adapter, as in tests/e2e/test_rag_api.py; its ``hold_marker`` holds the
embedding of marked texts until the gateway hangs up, like a model that is slow for as
long as the test needs.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.rag_api import Env, chunks_in, create, embedding_model, error_of
from tests.support.rag_fakes import embeddings_upstream
from tests.support.servers import serve_gateway
from tests.support.tenants import seed_keys

KEY = "sk-rag-limits"
OTHER_KEY = "sk-rag-limits-other"
MARK = "heldword"
JOB_THRESHOLD = 5
MAX_CHUNKS = 60


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("rag-limits")
    (root / "allowed").mkdir()
    seed_keys(root / "data", {OTHER_KEY: "team_other"})  # jobs belong to a team
    with embeddings_upstream() as (upstream, url):
        config = {
            "server": {"api_keys": [KEY], "data_dir": str(root / "data")},
            "models": [
                # Longer than any wait below: only the client leaving ends a held call.
                embedding_model(url, timeout_s=600)
            ],
            "rag": {
                "allowed_dirs": [str(root / "allowed")],
                "chunk_tokens": 16,
                "chunk_overlap": 0,
                "embed_batch_size": 2,
                "max_chunks_per_request": MAX_CHUNKS,
                "max_index_patterns": 4,
                "max_index_pattern_chars": 64,
                "index_job_threshold_files": JOB_THRESHOLD,
            },
        }
        with serve_gateway(config) as gateway:
            yield Env(gateway, upstream, root)


def client(env: Env, key: str = KEY) -> httpx.Client:
    return httpx.Client(
        base_url=f"{env.gateway.url}/v1/switchyard/rag",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


@pytest.fixture
def api(env: Env) -> Iterator[httpx.Client]:
    with client(env) as c:
        yield c


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a bounded wait for another thread, not a timing assertion)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def paragraphs(n: int, word: str = "harbour") -> str:
    """``n`` paragraphs of about 14 tokens: one chunk each at chunk_tokens=16."""
    return "\n\n".join(f"Paragraph {i} about {word} lighthouses and boats {i}." for i in range(n))


# -- bad index requests are a clear 400 -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"path": "{allowed}/do\x00cs"}, "path", "NUL byte"),
        ({"path": "{allowed}/" + "n" * 300}, "path", "too long"),
        ({"path": "{allowed}/" + "/".join(["d" * 200] * 25)}, "path", "too long"),
        ({"path": "~nosuchuser-switchyard/x"}, "path", "home directory that does not exist"),
        ({"path": "{allowed}/loop/docs"}, "path", "symbolic link loop"),
        ({"path": "{allowed}", "include": ["[z-a]"]}, "include[0]", "bad character range"),
        ({"path": "{allowed}", "include": ["*.md", "[!]"]}, "include[1]", "never closed"),
        ({"path": "{allowed}", "exclude": ["[[:alpha:]]"]}, "exclude[0]", "not a valid glob"),
        ({"path": "{allowed}", "include": ["*"] * 5}, "include", "rag.max_index_patterns"),
        ({"path": "{allowed}", "include": ["a" * 65]}, "include[0]", "max_index_pattern_chars"),
    ],
)
def test_bad_index_requests_are_400_naming_the_input(
    api: httpx.Client, env: Env, body: dict[str, Any], param: str, fragment: str
) -> None:
    if not api.get("/collections/badindex").is_success:
        create(api, "badindex")
    loop = env.allowed / "loop"
    if not loop.is_symlink():
        loop.symlink_to(loop)
    sent = {**body, "path": body["path"].format(allowed=env.allowed)}
    error = error_of(api.post("/collections/badindex/index", json=sent), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert fragment in error["message"]
    assert chunks_in(api, "badindex") == 0


def test_a_symlink_loop_in_the_tree_is_skipped_and_reported(api: httpx.Client, env: Env) -> None:
    create(api, "loops")
    docs = env.allowed / "loops"
    (docs / "sub").mkdir(parents=True)
    (docs / "good.md").write_text("Gulls nest on the cliffs.")
    (docs / "self.md").symlink_to(docs / "self.md")
    (docs / "sub" / "ping.md").symlink_to(docs / "sub" / "pong.md")
    (docs / "sub" / "pong.md").symlink_to(docs / "sub" / "ping.md")
    (docs / "sub" / "up").symlink_to(docs, target_is_directory=True)
    (docs / "photo.png").write_bytes(b"\x89PNG")
    response = api.post("/collections/loops/index", json={"path": str(docs)})
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["added"], report["failed"], report["skipped"]) == (1, [], 5)
    assert report["skipped_entries"] == [
        {"path": "self.md", "reason": "symbolic link loop"},
        {"path": "sub/up/", "reason": "symbolic link to a folder (not followed)"},
        {"path": "sub/ping.md", "reason": "symbolic link loop"},
        {"path": "sub/pong.md", "reason": "symbolic link loop"},
        {"path": "photo.png", "reason": "unsupported file type"},
    ]
    assert chunks_in(api, "loops") == 1


def test_health_answers_while_a_pathological_glob_is_matched(api: httpx.Client, env: Env) -> None:
    create(api, "globs")
    docs = env.allowed / "globs"
    for i in range(40):
        folder = docs / f"section-{i:02d}-with-a-rather-long-folder-name"
        folder.mkdir(parents=True)
        (folder / f"chapter-{i:02d}-with-a-long-file-name-too.md").write_text(f"Text {i}.")
    (docs / "archiveQ").mkdir()
    (docs / "archiveQ" / "kept.md").write_text("The only match.")
    answers: dict[str, httpx.Response] = {}

    def index() -> None:
        with client(env) as other:
            answers["index"] = other.post(
                "/collections/globs/index", json={"path": str(docs), "include": ["**" * 10 + "Q"]}
            )

    thread = threading.Thread(target=index)
    thread.start()
    health = httpx.get(f"{env.gateway.url}/health", timeout=30)
    thread.join()
    assert health.status_code == 200
    report = answers["index"].json()
    assert answers["index"].status_code == 200, report
    assert report["added"] == 1 and report["skipped"] == 0


# -- jobs --------------------------------------------------------------------------------


def test_a_large_index_becomes_a_job_polled_to_succeeded(api: httpx.Client, env: Env) -> None:
    create(api, "bigdir")
    docs = env.allowed / "bigdir"
    docs.mkdir()
    files = JOB_THRESHOLD + 3
    for i in range(files):
        (docs / f"page-{i}.md").write_text(paragraphs(2, f"topic{i}"))
    started = api.post("/collections/bigdir/index", json={"path": str(docs)})
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["object"] == "rag.index_job" and job["collection"] == "bigdir"
    assert job["status"] == "queued" and job["id"].startswith("ragjob_")
    assert job["progress"] == {"files_done": 0, "files_total": files, "chunks": 0}
    assert "result" not in job and "error" not in job

    path = f"/collections/bigdir/jobs/{job['id']}"
    wait_until(lambda: api.get(path).json()["status"] not in ("queued", "running"), "the job")
    done = api.get(path).json()
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"files_done": files, "files_total": files, "chunks": 2 * files}
    assert done["result"]["object"] == "rag.index"
    assert (done["result"]["added"], done["result"]["chunks"]) == (files, 2 * files)
    assert chunks_in(api, "bigdir") == 2 * files

    with client(env, OTHER_KEY) as other:
        assert f"'{job['id']}'" in error_of(other.get(path), 404)["message"]
    error_of(api.get("/collections/bigdir/jobs/ragjob_unknown"), 404)


# -- uploads: bounded, and stopped when the client leaves ---------------------------------


def test_an_upload_past_the_chunk_bound_is_413_before_embedding(
    api: httpx.Client, env: Env
) -> None:
    create(api, "bounded")
    before = env.upstream.inputs
    big = paragraphs(MAX_CHUNKS + 1).encode()
    response = api.post("/collections/bounded/files", files={"file": ("big.md", big)})
    error = error_of(response, 413)
    assert error["param"] == "file"
    assert f"more than {MAX_CHUNKS} chunks" in error["message"]
    assert "rag.max_chunks_per_request" in error["message"]
    assert env.upstream.inputs == before and chunks_in(api, "bounded") == 0
    fits = api.post(
        "/collections/bounded/files", files={"file": ("ok.md", paragraphs(MAX_CHUNKS).encode())}
    )
    assert fits.status_code == 200 and fits.json()["chunks"] == MAX_CHUNKS


def _send_upload(env: Env, path: str, filename: str, data: bytes) -> socket.socket:
    """Send a whole multipart upload on a raw socket and leave it open (no reading)."""
    request = httpx.Request(
        "POST", f"{env.gateway.url}{path}", files={"file": (filename, data, "text/markdown")}
    )
    body = request.read()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{env.gateway.port}\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: {request.headers['content-type']}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock = socket.create_connection(("127.0.0.1", env.gateway.port))
    sock.sendall(head.encode() + body)
    return sock


def test_a_client_that_leaves_stops_its_uploads_ingestion(api: httpx.Client, env: Env) -> None:
    create(api, "abandoned")
    upstream = env.upstream
    upstream.hold_marker, upstream.pass_marked, upstream.marked = MARK, 3, 0
    try:
        upload = paragraphs(40, MARK).encode()  # 40 chunks: 20 embedding calls of 2
        sock = _send_upload(env, "/v1/switchyard/rag/collections/abandoned/files", "a.md", upload)
        wait_until(lambda: upstream.held == 1, "the fourth embedding call to be held")
        assert chunks_in(api, "abandoned") == 6  # three batches stored, one at a time
        sock.close()
        # The gateway cancels the held embedding call when its own client leaves.
        wait_until(lambda: upstream.abandoned == 1, "the held embedding call to be dropped")
        wait_until(lambda: chunks_in(api, "abandoned") == 0, "the partial upload to be removed")
        # The collection is free for another writer, and the upload embeds nothing more.
        other = api.post(
            "/collections/abandoned/documents",
            json={"documents": [{"id": "gulls", "text": "Gulls nest on the cliffs."}]},
        )
        assert other.status_code == 200 and other.json()["chunks"] == 1
        assert (upstream.marked, upstream.held) == (4, 1)
        assert chunks_in(api, "abandoned") == 1
    finally:
        upstream.hold_marker = None
