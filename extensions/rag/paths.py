"""Which server-side files a directory-index request may read, and which it matches.

A requested directory must lie below one of ``rag.allowed_dirs`` after both are fully
resolved (symlinks followed, ``..`` removed), so neither ``/allowed/../etc`` nor a
symlink inside an allowed directory pointing elsewhere gets out. Walking does not
follow symlinked folders (no loops, no escapes); a symlinked file is read only when its
target is itself inside an allowed directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from proxy.errors import InvalidRequest, PermissionDenied


def allowed_roots(allowed_dirs: list[str]) -> list[Path]:
    return [Path(d).expanduser().resolve() for d in allowed_dirs if d.strip()]


def is_within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_index_root(path: str, allowed_dirs: list[str]) -> Path:
    """The resolved directory to index, or 403/400 naming ``path``.

    The permission check comes before any existence check, so the answer never tells
    whether a path outside the allowed directories exists.
    """
    roots = allowed_roots(allowed_dirs)
    if not roots:
        raise PermissionDenied(
            f"Cannot index '{path}': directory indexing is off (rag.allowed_dirs is empty).",
            param="path",
        )
    requested = Path(path).expanduser()
    if not requested.is_absolute():
        raise InvalidRequest(f"Path '{path}' must be absolute.", param="path")
    resolved = requested.resolve()
    if not is_within(resolved, roots):
        raise PermissionDenied(
            f"Path '{path}' is outside the directories allowed for indexing (rag.allowed_dirs).",
            param="path",
        )
    if not resolved.exists():
        raise InvalidRequest(f"Path '{path}' does not exist.", param="path")
    if not resolved.is_dir():
        raise InvalidRequest(f"Path '{path}' is not a directory.", param="path")
    return resolved


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob on '/'-separated relative paths (see ``IndexRequest``)."""
    body = pattern.strip().lstrip("/")
    if body.endswith("/"):
        body += "**"
    anchored = "/" in body
    out: list[str] = [] if anchored else ["(?:.*/)?"]
    i = 0
    while i < len(body):
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif body[i] == "*":
            out.append("[^/]*")
            i += 1
        elif body[i] == "?":
            out.append("[^/]")
            i += 1
        elif body[i] == "[" and (close := body.find("]", i + 2)) != -1:
            inner = body[i + 1 : close]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = close + 1
        else:
            out.append(re.escape(body[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches(relative: str, patterns: list[str]) -> bool:
    return any(glob_regex(p).match(relative) for p in patterns if p.strip())


class WalkResult:
    """Files a walk matched, and how many it passed over (symlinks leading outside)."""

    def __init__(self) -> None:
        self.files: list[tuple[str, Path]] = []
        self.outside = 0


def walk(
    root: Path, include: list[str], exclude: list[str], roots: list[Path], limit: int
) -> WalkResult:
    """Matching files below ``root`` as ``(relative posix path, resolved path)``.

    Raises ``InvalidRequest`` when more than ``limit`` files match: nothing has been
    indexed by then.
    """
    result = WalkResult()
    for relative, path in _candidates(root, exclude):
        if not matches(relative, include):
            continue
        target = path.resolve() if path.is_symlink() else path
        if not is_within(target, roots) or not target.is_file():
            result.outside += 1
            continue
        result.files.append((relative, target))
        if len(result.files) > limit:
            raise InvalidRequest(
                f"More than {limit} files match under '{root}' (rag.max_index_files); "
                "narrow the include/exclude patterns.",
                param="include",
            )
    return result


def _candidates(root: Path, exclude: list[str]) -> Iterator[tuple[str, Path]]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        prefix = base.relative_to(root).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        dirs[:] = sorted(
            d
            for d in dirs
            if not matches(prefix + d, exclude) and not matches(prefix + d + "/", exclude)
        )
        for name in sorted(files):
            relative = prefix + name
            if not matches(relative, exclude):
                yield relative, base / name
