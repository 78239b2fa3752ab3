"""Fixtures of the deployment-kit tests: the real ``switchyard check-config`` on a file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.servers import ROOT

CheckConfig = Callable[..., subprocess.CompletedProcess[str]]


def run_check_config(
    path: Path, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``switchyard check-config path`` in a subprocess running this checkout's code, with
    ``env`` added to the environment (for the file's ``env:NAME`` references)."""
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": pythonpath, **env},
    )


@pytest.fixture
def check_config() -> CheckConfig:
    return run_check_config
