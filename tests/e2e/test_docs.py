"""/docs works with no internet: its page loads only files this server serves, and the
OpenAPI document gives every endpoint that takes a body its request schema."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import swagger_ui_bundle

from tests.support.servers import RunningServer, serve_gateway


@pytest.fixture(scope="module")
def server() -> Iterator[RunningServer]:
    with serve_gateway({"server": {"api_keys": ["sk-docs"]}}) as running:
        yield running


@pytest.fixture(scope="module")
def document(server: RunningServer) -> dict[str, Any]:
    reply = httpx.get(f"{server.url}/docs/openapi.json")
    assert reply.status_code == 200
    return reply.json()  # type: ignore[no-any-return]


def test_the_docs_page_loads_only_files_this_server_serves(server: RunningServer) -> None:
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200
    assert "SwaggerUIBundle" in page.text
    urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text)
    assert len(urls) >= 3
    for url in urls:
        assert url.startswith("/docs/assets/"), url
        asset = httpx.get(f"{server.url}{url}")
        assert asset.status_code == 200, url
        shipped = Path(swagger_ui_bundle.swagger_ui_path) / url.removeprefix("/docs/assets/")
        assert asset.content == shipped.read_bytes(), url
    assert "://" not in " ".join(urls)


def test_the_assets_route_serves_nothing_outside_its_package(server: RunningServer) -> None:
    for path in ("/docs/assets/../../README.md", "/docs/assets/%2e%2e/%2e%2e/pyproject.toml"):
        assert httpx.get(f"{server.url}{path}").status_code == 404


def test_every_post_operation_has_a_request_schema(document: dict[str, Any]) -> None:
    posts = {path: item["post"] for path, item in document["paths"].items() if "post" in item}
    assert len(posts) >= 20
    missing = [path for path, operation in posts.items() if "requestBody" not in operation]
    assert missing == []


def test_request_schemas_are_the_wire_structs(document: dict[str, Any]) -> None:
    chat = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    ref = chat["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ChatCompletionRequest"
    schema = document["components"]["schemas"]["ChatCompletionRequest"]
    assert {"model", "messages", "stream", "tools", "response_format"} <= set(schema["properties"])
    assert set(schema["required"]) == {"model", "messages"}
    edit = document["paths"]["/v1/images/edits"]["post"]["requestBody"]["content"]
    form = edit["multipart/form-data"]["schema"]["allOf"]
    assert form[1]["properties"]["image"] == {"type": "string", "format": "binary"}
    for ref_holder in re.findall(r'"\$ref": "([^"]+)"', str(document).replace("'", '"')):
        name = ref_holder.rsplit("/", 1)[-1]
        assert name in document["components"]["schemas"], ref_holder


def test_the_document_declares_how_to_authenticate(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": "An API key."}
    assert schemes["api-key"] == {"type": "apiKey", "name": "api-key", "in": "header"}
    assert document["security"] == [{"bearer": []}, {"api-key": []}]
