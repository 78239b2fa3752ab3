"""The allowed-directories guard (``..``, symlinks), bad paths and bad entries in the
tree, and the glob filters of indexing (gitignore syntax, linear-time matching)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from extensions.rag.budget import WorkAbandoned, WorkBudget
from extensions.rag.paths import (
    Patterns,
    allowed_roots,
    compile_patterns,
    resolve_index_root,
    walk,
)
from extensions.rag.schemas import SkippedEntry
from proxy.errors import InvalidRequest, PermissionDenied


def patterns(*globs: str, max_count: int = 64, max_chars: int = 256) -> Patterns:
    return compile_patterns(list(globs), "include", max_count=max_count, max_chars=max_chars)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    allowed = tmp_path / "allowed"
    secret = tmp_path / "secret"
    (allowed / "docs" / "deep").mkdir(parents=True)
    secret.mkdir()
    (secret / "passwords.txt").write_text("hunter2")
    (allowed / "docs" / "a.md").write_text("# A")
    (allowed / "docs" / "deep" / "b.py").write_text("print('b')")
    (allowed / "docs" / ".hidden.md").write_text("hidden")
    (allowed / "docs" / "node_modules").mkdir()
    (allowed / "docs" / "node_modules" / "dep.js").write_text("x")
    (allowed / "docs" / "escape").symlink_to(secret, target_is_directory=True)
    (allowed / "docs" / "leak.txt").symlink_to(secret / "passwords.txt")
    (allowed / "docs" / "alias.md").symlink_to(allowed / "docs" / "a.md")
    return {"allowed": allowed, "secret": secret, "docs": allowed / "docs"}


def test_a_directory_below_an_allowed_one_resolves(tree: dict[str, Path]) -> None:
    root = resolve_index_root(str(tree["docs"]), [str(tree["allowed"])])
    assert root == tree["docs"].resolve()
    assert resolve_index_root(str(tree["allowed"]), [str(tree["allowed"])]) == root.parent


@pytest.mark.parametrize(
    "escape",
    [
        "{allowed}/../secret",  # dot-dot
        "{allowed}/docs/../../secret",
        "{allowed}/docs/escape",  # a symlinked folder pointing outside
        "/",
    ],
)
def test_paths_outside_the_allowed_directories_are_refused(
    tree: dict[str, Path], escape: str
) -> None:
    path = escape.format(allowed=tree["allowed"])
    with pytest.raises(PermissionDenied) as caught:
        resolve_index_root(path, [str(tree["allowed"])])
    assert caught.value.http_status == 403
    assert path in caught.value.message and caught.value.param == "path"


def test_a_prefix_sibling_is_not_inside(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs-private").mkdir()
    with pytest.raises(PermissionDenied):
        resolve_index_root(str(tmp_path / "docs-private"), [str(tmp_path / "docs")])


def test_nothing_allowed_means_no_indexing(tree: dict[str, Path]) -> None:
    with pytest.raises(PermissionDenied) as caught:
        resolve_index_root(str(tree["docs"]), [])
    assert "allowed_dirs" in caught.value.message


def test_relative_missing_and_file_paths_are_bad_requests(tree: dict[str, Path]) -> None:
    allowed = [str(tree["allowed"])]
    for path, fragment in [
        ("docs", "absolute"),
        (str(tree["allowed"] / "nope"), "does not exist"),
        (str(tree["docs"] / "a.md"), "not a directory"),
    ]:
        with pytest.raises(InvalidRequest) as caught:
            resolve_index_root(path, allowed)
        assert caught.value.http_status == 400 and fragment in caught.value.message


def test_missing_paths_outside_are_refused_not_reported_missing(tree: dict[str, Path]) -> None:
    with pytest.raises(PermissionDenied):
        resolve_index_root("/definitely/not/here", [str(tree["allowed"])])


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.md", "a.md", True),
        ("*.md", "x/y/a.md", True),  # no slash: any depth
        ("docs/*.md", "docs/a.md", True),
        ("docs/*.md", "docs/x/a.md", False),
        ("docs/**/*.md", "docs/a.md", True),
        ("docs/**/*.md", "docs/x/y/a.md", True),
        ("**/test_*.py", "pkg/tests/test_x.py", True),
        ("src/", "src/a/b.c", True),
        ("?.txt", "a.txt", True),
        ("?.txt", "ab.txt", False),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "c.txt", True),
        ("[!ab].txt", "a.txt", False),
        (".*", "x/.git", True),
    ],
)
def test_glob_semantics(pattern: str, path: str, expected: bool) -> None:
    assert patterns(pattern).match(path) is expected


def test_a_later_negated_pattern_re_includes() -> None:
    spec = patterns("*.md", "!drafts/")
    assert spec.match("notes/a.md") is True
    assert spec.match("drafts/a.md") is False


def test_walk_filters_prunes_and_refuses_symlink_escapes(tree: dict[str, Path]) -> None:
    roots = allowed_roots([str(tree["allowed"])])
    docs = tree["docs"].resolve()
    result = walk(docs, patterns("*"), patterns(".*", "node_modules"), roots, limit=100)
    relative = [r for r, _ in result.files]
    assert relative == ["a.md", "alias.md", "deep/b.py"]
    # The symlinked folder is not walked at all; the in-tree file link reads its target.
    assert result.skipped == [
        SkippedEntry(path="escape/", reason="symbolic link to a folder (not followed)"),
        SkippedEntry(path="leak.txt", reason="symbolic link leading outside rag.allowed_dirs"),
    ]
    assert dict(result.files)["alias.md"] == docs / "a.md"
    only_md = walk(docs, patterns("*.md"), patterns(), roots, limit=100)
    assert sorted(r for r, _ in only_md.files) == [".hidden.md", "a.md", "alias.md"]


def test_walk_refuses_more_files_than_the_limit(tree: dict[str, Path]) -> None:
    roots = allowed_roots([str(tree["allowed"])])
    with pytest.raises(InvalidRequest) as caught:
        walk(tree["docs"].resolve(), patterns("*"), patterns(), roots, limit=2)
    assert "max_index_files" in caught.value.message


def test_blank_patterns_match_nothing() -> None:
    assert patterns("", "  ").match("a.md") is False


# -- bad entries in the tree are skipped and reported, never fatal ---------------------


def test_symlink_loops_and_broken_links_are_skipped_with_the_reason(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "good.md").write_text("# Good")
    (docs / "self.md").symlink_to(docs / "self.md")  # a link to itself
    (docs / "sub" / "ping.md").symlink_to(docs / "sub" / "pong.md")
    (docs / "sub" / "pong.md").symlink_to(docs / "sub" / "ping.md")
    (docs / "gone.md").symlink_to(docs / "missing.md")
    (docs / "up").symlink_to(docs, target_is_directory=True)  # a folder loop
    os.mkfifo(docs / "pipe.md")
    result = walk(docs, patterns("*"), patterns(), allowed_roots([str(tmp_path)]), limit=100)
    assert [r for r, _ in result.files] == ["good.md"]
    assert result.skipped == [
        SkippedEntry(path="up/", reason="symbolic link to a folder (not followed)"),
        SkippedEntry(path="gone.md", reason="broken symbolic link"),
        SkippedEntry(path="pipe.md", reason="not a regular file"),
        SkippedEntry(path="self.md", reason="symbolic link loop"),
        SkippedEntry(path="sub/ping.md", reason="symbolic link loop"),
        SkippedEntry(path="sub/pong.md", reason="symbolic link loop"),
    ]


def test_a_name_that_is_not_utf8_is_skipped(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.md").write_text("fine")
    with open(os.path.join(os.fsencode(docs), b"caf\xe9.md"), "w") as handle:
        handle.write("latin-1 name")
    result = walk(docs, patterns("*"), patterns(), allowed_roots([str(tmp_path)]), limit=100)
    assert [r for r, _ in result.files] == ["ok.md"]
    assert result.skipped == [SkippedEntry(path="caf\\udce9.md", reason="name is not UTF-8")]


def test_an_abandoned_walk_stops(tree: dict[str, Path]) -> None:
    budget = WorkBudget()
    budget.abandon()
    roots = allowed_roots([str(tree["allowed"])])
    with pytest.raises(WorkAbandoned):
        walk(tree["docs"].resolve(), patterns("*"), patterns(), roots, limit=100, budget=budget)


# -- bad requested paths are a 400 naming them -------------------------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("{allowed}/do\x00cs", "NUL byte"),
        ("{allowed}/" + "n" * 300, "too long"),
        ("{allowed}/" + "/".join(["d" * 200] * 25), "too long"),
        ("~nosuchuser-for-switchyard/x", "home directory that does not exist"),
        ("{allowed}/loop/x", "symbolic link loop"),
    ],
)
def test_bad_paths_are_bad_requests(tree: dict[str, Path], path: str, fragment: str) -> None:
    (tree["allowed"] / "loop").symlink_to(tree["allowed"] / "loop")
    wanted = path.format(allowed=tree["allowed"])
    with pytest.raises(InvalidRequest) as caught:
        resolve_index_root(wanted, [str(tree["allowed"])])
    assert caught.value.http_status == 400 and caught.value.param == "path"
    assert fragment in caught.value.message
    assert len(caught.value.message) < 400  # a long path is not echoed whole


def test_a_symlink_loop_outside_is_refused_not_reported(tmp_path: Path) -> None:
    (tmp_path / "allowed").mkdir()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(PermissionDenied):
        resolve_index_root(str(tmp_path / "loop"), [str(tmp_path / "allowed")])


# -- patterns: bad ones are a 400 naming them; matching is linear ----------------------


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [
        ("[z-a]", "bad character range z-a"),
        ("[!]", "never closed"),
        ("[]", "never closed"),
        ("docs/[ab", "never closed"),
        ("\\", "not a valid glob"),
        ("!", "not a valid glob"),
        ("a\x00b", "NUL"),
    ],
)
def test_bad_patterns_are_bad_requests(pattern: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        compile_patterns(["*.md", pattern], "exclude", max_count=8, max_chars=64)
    assert caught.value.http_status == 400 and caught.value.param == "exclude[1]"
    assert fragment in caught.value.message


def test_pattern_count_and_length_are_bounded() -> None:
    with pytest.raises(InvalidRequest) as many:
        patterns(*["*.md"] * 9, max_count=8)
    assert many.value.param == "include" and "rag.max_index_patterns" in many.value.message
    with pytest.raises(InvalidRequest) as long:
        patterns("*.md", "a" * 65, max_chars=64)
    assert long.value.param == "include[1]"
    assert "rag.max_index_pattern_chars" in long.value.message
    assert patterns(*["*.md"] * 8, max_count=8).match("a.md") is True


def test_patterns_too_complex_together_are_a_bad_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        patterns(*["?" * 256] * 64)  # each compiles; RE2 refuses the set of all of them
    assert caught.value.param == "include" and "too complex" in caught.value.message


def _finishes(fn: object) -> bool:
    """Whether ``fn()`` returns while the GIL-holding regex engines would still be
    backtracking: it runs in a thread and the test waits for it (no timing asserted;
    Python's re needs hours for these, so a wrong matcher hangs until the timeout)."""
    done = threading.Event()

    def run() -> None:
        fn()  # type: ignore[operator]
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(timeout=60)


@pytest.mark.parametrize(
    ("pattern", "matching"),
    [
        ("**" * 10 + "Q", "x/yQ"),
        ("**" * 100 + "Q", "Q"),
        ("**/a/**/a/**/a/**/a/**/a/**/a/**/b", "a/" * 6 + "b"),  # wcmatch backtracks here
        ("*a*a*a*a*a*a*a*a*a*a*a*a*b", "x/" + "a" * 12 + "b"),
    ],
)
def test_pathological_patterns_match_in_linear_time(pattern: str, matching: str) -> None:
    spec = patterns(pattern)
    paths = ["a/" * 120 + "c", "a" * 250, ("a" * 30 + "/") * 60 + "x"]
    results: list[bool] = []
    assert _finishes(lambda: results.extend(spec.match(p) for p in paths))
    assert results == [False, False, False]
    assert spec.match(matching) is True


def test_an_unreadable_folder_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    (docs / "locked").mkdir(parents=True)
    (docs / "locked" / "secret.md").write_text("x")
    (docs / "open.md").write_text("fine")
    real_scandir = os.scandir

    def scandir(path: str) -> object:  # tests run as root, so chmod cannot deny reading
        if Path(path) == docs / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = walk(docs, patterns("*"), patterns(), allowed_roots([str(tmp_path)]), limit=100)
    assert [r for r, _ in result.files] == ["open.md"]
    assert result.skipped == [
        SkippedEntry(path="locked/", reason="folder cannot be read: Permission denied")
    ]
