"""Which server-side files a directory-index request may read, and which it matches.

A requested directory must lie below one of ``rag.allowed_dirs`` after both are fully
resolved (symlinks followed, ``..`` removed), so neither ``/allowed/../etc`` nor a
symlink inside an allowed directory pointing elsewhere gets out. Walking does not
follow symlinked folders (no loops, no escapes); a symlinked file is read only when its
target is itself inside an allowed directory. A bad entry inside the tree (a symlink
loop, a broken link, an unreadable folder) is skipped and reported, never fatal; a bad
requested path is a 400 naming it.

Include and exclude patterns are gitignore patterns compiled by ``pathspec`` on its
RE2 backend. RE2 matches in time linear in the path whatever the pattern: Python's
``re`` (pathspec's default backend, and the translator this module had before)
backtracks exponentially on runs like ``**********Q`` while holding the GIL, and
wcmatch, which collapses such runs, still blows up on ``**/a/**/a/**/a/**/b``.
"""

from __future__ import annotations

import errno
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pathspec
import re2

from extensions.rag.budget import WorkBudget
from extensions.rag.schemas import SkippedEntry
from proxy.errors import InvalidRequest, PermissionDenied

#: Linux's PATH_MAX: a longer path cannot name a file, so it is refused unread.
MAX_PATH_BYTES = 4096
#: The longest part of a path echoed back in an error message.
_SHOWN_CHARS = 200


def shown(value: str) -> str:
    """``value`` for an error message: at most ``_SHOWN_CHARS`` characters."""
    if len(value) <= _SHOWN_CHARS:
        return value
    return f"{value[:_SHOWN_CHARS]}... ({len(value)} characters)"


def allowed_roots(allowed_dirs: list[str]) -> list[Path]:
    return [Path(d).expanduser().resolve() for d in allowed_dirs if d.strip()]


def is_within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "the path or one of its names is too long"
    if exc.errno == errno.ELOOP:
        return "it goes through a symbolic link loop"
    return exc.strerror or str(exc)


def _requested(path: str) -> Path:
    """``path`` as an absolute ``Path`` with ``~`` expanded, or 400 saying why not."""
    if "\x00" in path:
        raise InvalidRequest("The path must not contain a NUL byte.", param="path")
    if len(os.fsencode(path)) >= MAX_PATH_BYTES:
        raise InvalidRequest(
            f"Path '{shown(path)}' is too long (at most {MAX_PATH_BYTES - 1} bytes).",
            param="path",
        )
    try:
        requested = Path(path).expanduser()
    except RuntimeError:  # "~name" for a user that does not exist
        raise InvalidRequest(
            f"Path '{shown(path)}' names a home directory that does not exist.", param="path"
        ) from None
    if not requested.is_absolute():
        raise InvalidRequest(f"Path '{shown(path)}' must be absolute.", param="path")
    return requested


def resolve_index_root(path: str, allowed_dirs: list[str]) -> Path:
    """The resolved directory to index, or 403/400 naming ``path``.

    The permission check comes before any existence check, so the answer never tells
    whether a path outside the allowed directories exists.
    """
    roots = allowed_roots(allowed_dirs)
    if not roots:
        raise PermissionDenied(
            f"Cannot index '{shown(path)}': directory indexing is off (rag.allowed_dirs is empty).",
            param="path",
        )
    requested = _requested(path)
    outside = PermissionDenied(
        f"Path '{shown(path)}' is outside the directories allowed for indexing (rag.allowed_dirs).",
        param="path",
    )
    try:
        resolved = requested.resolve()
    except (OSError, RuntimeError):  # a symlink loop on the way (RuntimeError before 3.13)
        if not is_within(Path(os.path.normpath(requested)), roots):
            raise outside from None
        raise InvalidRequest(
            f"Path '{shown(path)}' cannot be resolved: it goes through a symbolic link loop.",
            param="path",
        ) from None
    if not is_within(resolved, roots):
        raise outside
    try:
        if not resolved.exists():
            raise InvalidRequest(f"Path '{shown(path)}' does not exist.", param="path")
        if not resolved.is_dir():
            raise InvalidRequest(f"Path '{shown(path)}' is not a directory.", param="path")
    except OSError as exc:
        raise InvalidRequest(
            f"Path '{shown(path)}' cannot be used: {_os_reason(exc)}.", param="path"
        ) from None
    return resolved


# -- patterns ------------------------------------------------------------------------


class Patterns:
    """A compiled include or exclude list (gitignore syntax, linear-time matching)."""

    def __init__(self, spec: pathspec.PathSpec, empty: bool) -> None:
        self._spec = spec
        self._empty = empty

    def match(self, relative: str) -> bool:
        """Whether ``relative`` (posix, relative to the indexed root; a folder ends
        with ``/``) is matched. An empty list matches nothing."""
        return not self._empty and bool(self._spec.match_file(relative))


def _unclosed_bracket(pattern: str) -> int | None:
    """Where a ``[`` opens a character class that never closes, else None.

    ``]`` right after ``[`` (or ``[!``) is a member, not the end, as in fnmatch and
    git: so ``[!]`` and ``[]`` are unclosed. Git would quietly match nothing there.
    """
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] in "!^":
                j += 1
            j += 1  # the first member may be ']'
            close = pattern.find("]", j)
            if close == -1:
                return i
            i = close + 1
            continue
        i += 1
    return None


def _spec(lines: list[str]) -> pathspec.PathSpec:
    with warnings.catch_warnings():
        # Python's re warns about "[[" (a possible future nested set) in the regex
        # pathspec also compiles; the pattern is then rejected or matched literally.
        warnings.simplefilter("ignore", FutureWarning)
        return pathspec.PathSpec.from_lines("gitignore", lines, backend="re2")


def compile_patterns(
    patterns: list[str], param: str, *, max_count: int, max_chars: int
) -> Patterns:
    """``patterns`` compiled, or 400 naming the bad one (``include[2]``) and why.

    At most ``max_count`` patterns of at most ``max_chars`` characters each
    (``rag.max_index_patterns``, ``rag.max_index_pattern_chars``).
    """
    if len(patterns) > max_count:
        raise InvalidRequest(
            f"At most {max_count} {param} patterns are allowed (rag.max_index_patterns); "
            f"{len(patterns)} were given.",
            param=param,
        )
    lines: list[str] = []
    for index, pattern in enumerate(patterns):
        where = f"{param}[{index}]"
        if len(pattern) > max_chars:
            raise InvalidRequest(
                f"Pattern {where} is {len(pattern)} characters long; at most {max_chars} "
                "are allowed (rag.max_index_pattern_chars).",
                param=where,
            )
        if "\x00" in pattern or "\n" in pattern or "\r" in pattern:
            raise InvalidRequest(
                f"Pattern {where} must not contain NUL or line breaks.", param=where
            )
        body = pattern.strip()
        if not body:
            continue
        if (at := _unclosed_bracket(body)) is not None:
            raise InvalidRequest(
                f"Pattern {where} '{shown(body)}' has a '[' at position {at} that is never "
                "closed by ']'.",
                param=where,
            )
        try:
            _spec([body])
        # pathspec raises ValueError for a malformed gitignore pattern, re.error when
        # Python rejects the regex it made ([z-a]), and re2.error when RE2 does.
        except (ValueError, re.error, re2.error) as exc:
            reason = exc.msg if isinstance(exc, re.error) else str(exc)
            raise InvalidRequest(
                f"Pattern {where} '{shown(body)}' is not a valid glob: {reason}.", param=where
            ) from None
        lines.append(body)
    try:
        return Patterns(_spec(lines), empty=not lines)
    except re2.error:  # each one compiles, but together they exceed RE2's memory budget
        raise InvalidRequest(
            f"The {param} patterns are too complex together; give fewer or simpler ones.",
            param=param,
        ) from None


# -- walking -------------------------------------------------------------------------


@dataclass
class WalkResult:
    """Files a walk matched, and the entries it passed over with the reason."""

    files: list[tuple[str, Path]] = field(default_factory=list)
    skipped: list[SkippedEntry] = field(default_factory=list)


def _valid_name(relative: str) -> bool:
    """File names that are not UTF-8 reach Python as lone surrogates, which neither
    JSON nor the vector store's metadata can carry."""
    try:
        relative.encode()
    except UnicodeEncodeError:
        return False
    return True


def _printable(relative: str) -> str:
    """A name that is not UTF-8, with its odd characters escaped (``caf\\udce9``)."""
    return relative.encode("utf-8", "backslashreplace").decode()


def _unreadable(root: Path, error: OSError) -> tuple[str, Path, str]:
    where = Path(error.filename) if error.filename else root
    relative = where.relative_to(root).as_posix() if where.is_relative_to(root) else "."
    relative = "" if relative == "." else relative + "/"
    return _printable(relative) or "./", where, f"folder cannot be read: {_os_reason(error)}"


def _classify(path: Path, roots: list[Path]) -> tuple[Path | None, str | None]:
    """``(file to read, None)`` or ``(None, why it is skipped)`` for a walked entry."""
    try:
        if path.is_symlink():
            target = path.resolve(strict=True)
            if not is_within(target, roots):
                return None, "symbolic link leading outside rag.allowed_dirs"
        else:
            target = path
        if not target.is_file():
            return None, "not a regular file"
    except RuntimeError:  # resolve() on a symlink loop, before Python 3.13
        return None, "symbolic link loop"
    except FileNotFoundError:
        return None, "broken symbolic link"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "symbolic link loop"
        return None, f"cannot be read: {_os_reason(exc)}"
    return target, None


def walk(
    root: Path,
    include: Patterns,
    exclude: Patterns,
    roots: list[Path],
    limit: int,
    budget: WorkBudget | None = None,
) -> WalkResult:
    """Matching files below ``root`` as ``(relative posix path, resolved path)``.

    Raises ``InvalidRequest`` when more than ``limit`` files match: nothing has been
    indexed by then; ``WorkAbandoned`` when ``budget`` is abandoned.
    """
    result = WalkResult()
    for relative, path, reason in _candidates(root, exclude, result):
        if budget is not None:
            budget.check()
        if reason is not None:
            result.skipped.append(SkippedEntry(path=relative, reason=reason))
            continue
        if not include.match(relative):
            continue
        target, reason = _classify(path, roots)
        if target is None:
            result.skipped.append(SkippedEntry(path=relative, reason=reason or "skipped"))
            continue
        result.files.append((relative, target))
        if len(result.files) > limit:
            raise InvalidRequest(
                f"More than {limit} files match under '{shown(str(root))}' "
                "(rag.max_index_files); narrow the include/exclude patterns.",
                param="include",
            )
    return result


def _candidates(
    root: Path, exclude: Patterns, result: WalkResult
) -> Iterator[tuple[str, Path, str | None]]:
    """``(relative, path, None)`` for every file not excluded, and ``(relative, path,
    reason)`` for entries that cannot be walked (unreadable folders, symlinked folders,
    names that are not UTF-8)."""
    unreadable: list[OSError] = []
    for folder, dirs, files in os.walk(root, onerror=unreadable.append, followlinks=False):
        while unreadable:
            yield _unreadable(root, unreadable.pop())
        base = Path(folder)
        prefix = base.relative_to(root).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        kept: list[str] = []
        for name in sorted(dirs):
            relative = prefix + name
            if exclude.match(relative + "/"):
                continue
            if not _valid_name(relative):
                yield _printable(relative) + "/", base / name, "name is not UTF-8"
            elif (base / name).is_symlink():
                yield relative + "/", base / name, "symbolic link to a folder (not followed)"
            else:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            relative = prefix + name
            if exclude.match(relative):
                continue
            if not _valid_name(relative):
                yield _printable(relative), base / name, "name is not UTF-8"
            else:
                yield relative, base / name, None
    for error in unreadable:
        yield _unreadable(root, error)
