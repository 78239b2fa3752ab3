"""The Dockerfile and .dockerignore, parsed offline (``dockerfile-parse``; no Docker here):
portable llama.cpp builds, explicit CUDA architectures, a compiler-free final image built
from a builder stage's wheels, a non-root user, a HEALTHCHECK that works against a real
gateway, and workflow paths that resolve from the image's working directory."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pathspec
import pytest
from dockerfile_parse import DockerfileParser

from tests.deploy.conftest import CheckConfig
from tests.support.fake_openai import running_fake
from tests.support.servers import ROOT, serve_gateway
from tests.support.tenancy import chat_model

COMPILERS = {"build-essential", "gcc", "g++", "clang", "cmake", "make", "cpp", "python3.11-dev"}


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, instruction: str) -> list[str]:
        return [v for i, v in self.instructions if i == instruction]

    def apt_packages(self) -> set[str]:
        found: set[str] = set()
        for run in self.values("RUN"):
            for command in re.split(r"&&|;", run):
                words = shlex.split(command.replace("\\\n", " "))
                if words[:2] == ["apt-get", "install"]:
                    found |= {w for w in words[2:] if not w.startswith("-")}
        return found


def stages() -> list[Stage]:
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    bases = iter(parser.parent_images)  # with ARG defaults substituted
    found: list[Stage] = []
    for item in parser.structure:
        instruction, value = item["instruction"], item["value"]
        if instruction == "FROM":
            name = value.split()[-1] if " AS " in value.upper() else str(len(found))
            found.append(Stage(name, next(bases)))
        elif found and instruction != "COMMENT":
            found[-1].instructions.append((instruction, value))
    return found


def stage(name: str) -> Stage:
    (found,) = [s for s in stages() if s.name == name]
    return found


def _cmake_args(stage: Stage) -> str:
    (run,) = [r for r in stage.values("RUN") if "CMAKE_ARGS=" in r]
    assert "pip wheel" in run  # the build makes wheels for the final stage
    (args,) = re.findall(r'CMAKE_ARGS="([^"]*)"', run)
    return args


def test_the_default_target_is_the_cpu_image() -> None:
    assert stages()[-1].name == "cpu"
    assert stage("cpu").base.startswith("python:3.11-slim")


def test_llama_cpp_is_built_for_any_x86_64_cpu() -> None:
    assert "-DGGML_NATIVE=OFF" in _cmake_args(stage("cpu-build")).split()
    assert "-DGGML_NATIVE=OFF" in _cmake_args(stage("cuda-build")).split()


def test_the_cuda_build_names_its_architectures() -> None:
    build = stage("cuda-build")
    args = _cmake_args(build).split()
    assert "-DGGML_CUDA=on" in args
    (archs,) = [a.split("=", 1)[1] for a in args if a.startswith("-DCMAKE_CUDA_ARCHITECTURES=")]
    default = {v.split("=", 1)[0]: v.split("=", 1)[1].strip('"') for v in build.values("ARG")}
    if archs.startswith("${"):
        archs = default[archs.strip("${}")]
    assert re.fullmatch(r"\d{2,3}(;\d{2,3})+", archs), archs  # explicit, never "native"
    assert {"80", "86", "90"} <= set(archs.split(";"))


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_final_images_have_no_compilers_and_install_the_builders_wheels(name: str) -> None:
    final = stage(name)
    assert not final.apt_packages() & COMPILERS, final.apt_packages()
    assert "devel" not in final.base
    (install,) = [r for r in final.values("RUN") if "pip install" in r]
    builder = re.search(r"--mount=type=bind,from=([\w-]+),source=/wheels", install)
    assert builder is not None and builder.group(1) == f"{name}-build"
    assert "--no-index" in install and "--find-links=/wheels" in install
    assert stage(builder.group(1)).apt_packages() & COMPILERS  # the compilers live there


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_final_images_run_as_a_user_and_listen_where_they_expose(name: str) -> None:
    final = stage(name)
    users = final.values("USER")
    assert users and users[-1] not in {"root", "0"}
    assert f"--uid {users[-1]}" in " ".join(final.values("RUN"))
    cmd = shlex.split(final.values("CMD")[-1].strip("[]").replace(",", " "))
    assert cmd[:2] == ["switchyard", "serve"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert [cmd[cmd.index("--port") + 1]] == final.values("EXPOSE")
    assert final.values("WORKDIR")[-1] in final.values("VOLUME")[-1]


def _healthcheck(final: Stage) -> tuple[str, str]:
    (check,) = final.values("HEALTHCHECK")
    (script,) = re.findall(r'CMD \["python", "-c", "(.*)"\]', check)
    (url,) = re.findall(r"http://127\.0\.0\.1:\d+/[\w/]*", script)
    return script, url


def test_the_healthcheck_passes_on_a_live_gateway_and_fails_without_one() -> None:
    final = stage("cpu")
    script, url = _healthcheck(final)
    assert url.endswith(f":{final.values('EXPOSE')[0]}/health")
    assert _healthcheck(stage("cuda")) == (script, url)
    with running_fake() as (_, fake_url):
        models = [chat_model("m", "upstream-m", fake_url)]
        with serve_gateway({"defaults": False, "models": models}) as gateway:
            live = script.replace(url, f"{gateway.url}/health")
            assert subprocess.run([sys.executable, "-c", live], timeout=30).returncode == 0
    assert subprocess.run([sys.executable, "-c", live], timeout=30).returncode != 0


def _ignored() -> pathspec.PathSpec:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return pathspec.PathSpec.from_lines("gitignore", lines)


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    ignored = _ignored()
    for path in (".venv/bin/python", "data/switchyard.sqlite3", ".git/HEAD", ".tools/helm"):
        assert ignored.match_file(path), path
    for path in (".pytest_cache/v", "proxy/__pycache__/app.cpython-311.pyc", "tests/conftest.py"):
        assert ignored.match_file(path), path
    for final in stages():
        for copy in final.values("COPY"):
            if "--from" in copy:
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not ignored.match_file(source), source
                assert not ignored.match_file(f"{source}/x.py"), source


def test_comfyui_workflows_resolve_from_the_images_working_directory(
    check_config: CheckConfig, tmp_path: Path
) -> None:
    """The image copies deploy/ to /app/deploy and runs in /data: the shipped ComfyUI
    config must find its workflow specs (relative to the file) from there."""
    final = stage("cpu")
    (copy,) = [c for c in final.values("COPY") if c.split()[0] == "deploy"]
    target = copy.split()[1]
    app = tmp_path / target.lstrip("/")
    shutil.copytree(ROOT / "deploy", app)
    workdir = tmp_path / final.values("WORKDIR")[-1].lstrip("/")
    workdir.mkdir()
    config = app / "comfyui" / "switchyard.comfyui.yaml"
    result = check_config(config, {}, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "-> comfyui:" in result.stdout
    (config.parent / "text-to-image.yaml").unlink()  # the check really reads the specs
    assert check_config(config, {}, cwd=workdir).returncode == 1
