"""The core names no plugin: a third-party extension brings its own config section and
routes through entry points alone, and only what a request uses creates files."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, ClassVar

import httpx
import msgspec
import pytest
from litestar import Request, get

import proxy.app
import proxy.settings
from extensions.activation import Activation
from extensions.base import Extension, ExtensionServices, registered_extensions
from proxy.gateway import json_response
from proxy.settings import ConfigError, Settings, settings_from_mapping
from tests.support.servers import serve_gateway

REPO = Path(__file__).resolve().parents[2]
PLUGIN_MODULES = (
    "extensions.rag",
    "extensions.retrieval",
    "extensions.personas",
    "extensions.sessions",
    "extensions.tools",
    "extensions.tool_loop",
    "adapters.openai",
    "adapters.llamacpp",
    "adapters.comfyui",
    "adapters.whisper",
    "adapters.tts",
)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize(
    "module", sorted((REPO / "proxy").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO))
)
def test_no_core_module_imports_a_plugin(module: Path) -> None:
    plugins = {
        name
        for name in _imports(module)
        if any(name == p or name.startswith(p + ".") for p in PLUGIN_MODULES)
    }
    assert plugins == set()


class GreeterConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    greeting: str = "hello"


class _Entry:
    """Stands in for an ``importlib.metadata.EntryPoint`` of another package."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def load(self) -> Any:
        return self.target


@get("/greeter", summary="A third-party extension's own route")
async def greet(request: Request[Any, Any, Any]) -> Any:
    extension = request.app.state.switchyard.extensions["greeter"]
    return json_response({"greeting": extension.config.greeting})


class GreeterExtension(Extension):
    name = "greeter"
    order = 90
    started: ClassVar[list[str]] = []

    def __init__(self, services: ExtensionServices) -> None:
        super().__init__(services)
        self.config = services.settings.section("greeter", GreeterConfig)

    async def start(self) -> None:
        self.started.append(self.config.greeting)

    def active(self, activation: Activation) -> bool:
        return False

    @classmethod
    def routes(cls, settings: Settings) -> list[Any]:
        return [greet]


@pytest.fixture
def greeter_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    sections = proxy.settings.registered_sections()
    extensions = registered_extensions()
    monkeypatch.setattr(
        proxy.settings,
        "registered_sections",
        lambda: {**sections, "greeter": _Entry(GreeterConfig)},
    )
    monkeypatch.setattr(
        proxy.app, "registered_extensions", lambda: {**extensions, "greeter": GreeterExtension}
    )


def test_an_installed_extension_gets_its_section_and_routes(greeter_installed: None) -> None:
    GreeterExtension.started.clear()
    with serve_gateway({"greeter": {"greeting": "bonjour"}}) as server:
        reply = httpx.get(f"{server.url}/v1/greeter")
    assert reply.status_code == 200
    assert reply.json() == {"greeting": "bonjour"}
    assert GreeterExtension.started == ["bonjour"]


def test_an_installed_extension_s_section_is_validated_by_its_struct(
    greeter_installed: None,
) -> None:
    with pytest.raises(ConfigError, match=r"greeter\.greeting"):
        settings_from_mapping({"greeter": {"greeting": 3}})
    with pytest.raises(ConfigError, match=r"unknown field `colour` - at `greeter`"):
        settings_from_mapping({"greeter": {"colour": "red"}})


def test_a_section_without_its_plugin_installed_is_refused() -> None:
    with pytest.raises(ConfigError, match="`greeter`: unknown section"):
        settings_from_mapping({"greeter": {"greeting": "hi"}})


def test_starting_and_serving_creates_no_session_or_vector_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with serve_gateway({"server": {"data_dir": str(data)}}) as server:
        assert httpx.get(f"{server.url}/v1/models").status_code == 200
    created = sorted(p.name for p in data.rglob("*")) if data.exists() else []
    assert "sessions.sqlite3" not in created
    assert "chroma" not in created
