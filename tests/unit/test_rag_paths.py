"""The allowed-directories guard (``..``, symlinks) and the glob filters of indexing."""

from __future__ import annotations

from pathlib import Path

import pytest

from extensions.rag.paths import allowed_roots, glob_regex, matches, resolve_index_root, walk
from proxy.errors import InvalidRequest, PermissionDenied


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
    assert bool(glob_regex(pattern).match(path)) is expected


def test_walk_filters_prunes_and_refuses_symlink_escapes(tree: dict[str, Path]) -> None:
    roots = allowed_roots([str(tree["allowed"])])
    docs = tree["docs"].resolve()
    result = walk(docs, ["*"], [".*", "node_modules"], roots, limit=100)
    relative = [r for r, _ in result.files]
    assert relative == ["a.md", "alias.md", "deep/b.py"]
    assert result.outside == 1  # leak.txt -> secret/passwords.txt
    # The symlinked folder is not walked at all; the in-tree file link reads its target.
    assert dict(result.files)["alias.md"] == docs / "a.md"
    only_md = walk(docs, ["*.md"], [], roots, limit=100)
    assert sorted(r for r, _ in only_md.files) == [".hidden.md", "a.md", "alias.md"]


def test_walk_refuses_more_files_than_the_limit(tree: dict[str, Path]) -> None:
    roots = allowed_roots([str(tree["allowed"])])
    with pytest.raises(InvalidRequest) as caught:
        walk(tree["docs"].resolve(), ["*"], [], roots, limit=2)
    assert "max_index_files" in caught.value.message


def test_matches_ignores_blank_patterns() -> None:
    assert not matches("a.md", ["", "  "])
