"""``RagStore`` against a real Chroma server (``chroma run``), as a team deployment uses.

The server is the ``chroma`` CLI that ships with the chromadb package, started on a
free port with its data in a temporary folder, and stopped afterwards.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from extensions.rag import ingest
from extensions.rag.config import RagConfig
from extensions.rag.schemas import DocumentIn
from extensions.rag.store import RagStore
from proxy.errors import NotFound, ServiceUnavailable
from tests.support.rag_fakes import bow_embed, make_pdf
from tests.support.servers import free_port

OWNER = "key-a"


def _chroma_cli() -> str:
    beside = Path(sys.executable).parent / "chroma"
    found = str(beside) if beside.exists() else shutil.which("chroma")
    if not found:
        pytest.fail("the chroma CLI (from the chromadb package) is not installed")
    return found


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = (data / "server.log").open("wb")
    process = subprocess.Popen(
        [
            _chroma_cli(),
            "run",
            "--path",
            str(data / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"chroma run exited with {process.returncode}")
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("chroma run did not answer its heartbeat in 30 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def test_a_chroma_server_serves_the_same_store(chroma_server: str, tmp_path: Path) -> None:
    config = RagConfig(chroma_url=chroma_server, chunk_tokens=64, chunk_overlap=8)
    store = RagStore(config, tmp_path, bow_embed)
    await store.start()
    await store.create_collection(OWNER, "team-docs", description="shared")
    await ingest.add_documents(
        store,
        OWNER,
        "team-docs",
        [
            DocumentIn(id="deploy", text="Deploy the gateway with the container image."),
            DocumentIn(id="keys", text="Rotate the API keys every ninety days.", metadata={"k": 1}),
        ],
    )
    await ingest.add_files(
        store, OWNER, "team-docs", [("runbook.pdf", make_pdf(["Restart the pumps."]))], {}
    )
    hits = await store.search(OWNER, ["team-docs"], "how often to rotate API keys", k=2)
    assert hits[0].source_id == "keys" and hits[0].metadata == {"k": 1}
    [pdf_hit] = await store.search(
        OWNER, ["team-docs"], "restart pumps", k=1, where={"doc_type": "pdf"}
    )
    assert pdf_hit.position.page == 1
    assert await store.delete_sources(OWNER, "team-docs", ids=["deploy"]) == (1, 1)
    await store.aclose()

    # A second store (another gateway replica) sees the same data through the server.
    replica = RagStore(config, tmp_path / "elsewhere", bow_embed)
    info = await replica.collection_info(OWNER, "team-docs")
    assert (info.description, info.chunks, info.owner) == ("shared", 2, OWNER)
    with pytest.raises(NotFound):  # the owner is kept by the server too
        await replica.collection_info("key-b", "team-docs")
    assert not (tmp_path / "elsewhere" / "chroma").exists()  # nothing embedded locally
    await replica.delete_collection(OWNER, "team-docs")
    with pytest.raises(NotFound):
        await replica.collection_info(OWNER, "team-docs")
    await replica.aclose()


async def test_an_unreachable_chroma_server_is_a_503(tmp_path: Path) -> None:
    config = RagConfig(chroma_url=f"http://127.0.0.1:{free_port()}")
    store = RagStore(config, tmp_path, bow_embed)
    await store.start()  # starting does not need the server
    with pytest.raises(ServiceUnavailable) as caught:
        await store.list_collections(OWNER)
    assert str(config.chroma_url) in caught.value.message
    assert caught.value.http_status == 503
    await store.aclose()
