"""Bytes of a file in, readable text out: plain text, markdown, HTML, PDF, source code.

The type comes from the file name (extension, or the whole name for ``Dockerfile`` and
the like), never from sniffing, so what is indexed is predictable. Every failure is an
``InvalidRequest`` naming the file: unsupported type, empty, binary, unreadable PDF.
These functions block (parsing a PDF takes a while): call them in a worker thread.
"""

from __future__ import annotations

import io
import re
from pathlib import PurePath

import msgspec

from proxy.errors import InvalidRequest

TEXT_EXTENSIONS = frozenset({".txt", ".text", ".log", ".rst", ".adoc", ".org", ".tex", ".csv"})
MARKDOWN_EXTENSIONS = frozenset({".md", ".markdown", ".mdown", ".mkd", ".mdx"})
HTML_EXTENSIONS = frozenset({".html", ".htm", ".xhtml"})
PDF_EXTENSIONS = frozenset({".pdf"})

#: Source code (and structured text) by extension, with the language it is recorded as.
CODE_LANGUAGES: dict[str, str] = {
    ".py": "python", ".pyi": "python", ".ipynb": "json", ".js": "javascript",
    ".mjs": "javascript", ".cjs": "javascript", ".jsx": "javascript", ".ts": "typescript",
    ".tsx": "typescript", ".java": "java", ".kt": "kotlin", ".kts": "kotlin",
    ".scala": "scala", ".groovy": "groovy", ".c": "c", ".h": "c", ".cc": "cpp",
    ".cpp": "cpp", ".cxx": "cpp", ".hh": "cpp", ".hpp": "cpp", ".hxx": "cpp", ".cs": "csharp",
    ".go": "go", ".rs": "rust", ".rb": "ruby", ".php": "php", ".swift": "swift",
    ".m": "objective-c", ".mm": "objective-c", ".dart": "dart", ".lua": "lua", ".r": "r",
    ".jl": "julia", ".pl": "perl", ".pm": "perl", ".hs": "haskell", ".ml": "ocaml",
    ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".clj": "clojure", ".zig": "zig",
    ".nim": "nim", ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".fish": "shell",
    ".ps1": "powershell", ".bat": "batch", ".sql": "sql", ".css": "css", ".scss": "scss",
    ".less": "less", ".vue": "vue", ".svelte": "svelte", ".json": "json", ".yaml": "yaml",
    ".yml": "yaml", ".toml": "toml", ".ini": "ini", ".cfg": "ini", ".xml": "xml",
    ".proto": "protobuf", ".graphql": "graphql", ".tf": "terraform", ".cmake": "cmake",
}  # fmt: skip
CODE_FILENAMES: dict[str, str] = {
    "dockerfile": "dockerfile", "containerfile": "dockerfile", "makefile": "make",
    "gnumakefile": "make", "cmakelists.txt": "cmake", "justfile": "just",
}  # fmt: skip


class Extracted(msgspec.Struct, kw_only=True):
    """A file's text, its type, and for a PDF the page each span of the text came from:
    ``pages`` holds ``(page number, start, end)`` offsets into ``text``."""

    text: str
    doc_type: str
    language: str | None = None
    pages: list[tuple[int, int, int]] | None = None


def doc_type_of(name: str) -> tuple[str, str | None] | None:
    """``(doc_type, language)`` for a file name, or None when it is not supported."""
    path = PurePath(name)
    lowered = path.name.lower()
    if lowered in CODE_FILENAMES:
        return "code", CODE_FILENAMES[lowered]
    suffix = path.suffix.lower()
    if suffix in TEXT_EXTENSIONS:
        return "text", None
    if suffix in MARKDOWN_EXTENSIONS:
        return "markdown", None
    if suffix in HTML_EXTENSIONS:
        return "html", None
    if suffix in PDF_EXTENSIONS:
        return "pdf", None
    if suffix in CODE_LANGUAGES:
        return "code", CODE_LANGUAGES[suffix]
    return None


def supported_types() -> str:
    return "text, markdown, HTML, PDF and source code (by file extension)"


def decode_text(data: bytes, name: str, param: str = "file") -> str:
    """UTF-8 (with or without BOM, or UTF-16 with BOM), else Windows-1252; a NUL byte in
    the first 8 KiB means binary and is refused."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:8192]:
        raise InvalidRequest(f"File '{name}' looks binary, not text.", param=param)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


_BLOCK_TAGS = (
    "address", "article", "aside", "blockquote", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
    "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary",
    "table", "tr", "ul", "title",
)  # fmt: skip
_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "canvas", "iframe", "object")
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """Readable text of an HTML page: scripts and styles dropped, one block per paragraph,
    headings marked with ``#`` and list items with ``-`` (markdown-like), runs of spaces
    collapsed. Uses BeautifulSoup with Python's own parser (no native dependency)."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(_DROP_TAGS):
        tag.decompose()
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(["td", "th"]):
        tag.insert_after(" | ")
    for tag in soup.find_all(_BLOCK_TAGS):
        name = tag.name or ""
        if len(name) == 2 and name[0] == "h" and name[1].isdigit():
            tag.insert_before("\n\n" + "#" * int(name[1]) + " ")
        elif name == "li":
            tag.insert_before("\n- ")
        else:
            tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    text = soup.get_text()
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def pdf_pages(data: bytes, name: str, param: str = "file") -> list[str]:
    """The text of each page (an empty string for a page without text)."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise InvalidRequest(f"PDF '{name}' is encrypted.", param=param)
        return [page.extract_text() or "" for page in reader.pages]
    except InvalidRequest:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise InvalidRequest(f"PDF '{name}' cannot be read: {exc}", param=param) from None


def _joined_pages(pages: list[str]) -> tuple[str, list[tuple[int, int, int]]]:
    parts: list[str] = []
    spans: list[tuple[int, int, int]] = []
    offset = 0
    for number, page_text in enumerate(pages, start=1):
        cleaned = page_text.strip()
        if not cleaned:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        parts.append(cleaned)
        spans.append((number, offset, offset + len(cleaned)))
        offset += len(cleaned)
    return "".join(parts), spans


def extract(name: str, data: bytes, param: str = "file") -> Extracted:
    """The readable text of file ``name`` with content ``data``."""
    kind = doc_type_of(name)
    if kind is None:
        raise InvalidRequest(
            f"File '{name}' has an unsupported type; supported: {supported_types()}.",
            param=param,
        )
    if not data.strip():
        raise InvalidRequest(f"File '{name}' is empty.", param=param)
    doc_type, language = kind
    pages = None
    if doc_type == "pdf":
        text, pages = _joined_pages(pdf_pages(data, name, param))
        if not text:
            raise InvalidRequest(
                f"PDF '{name}' has no extractable text (a scanned PDF needs OCR first).",
                param=param,
            )
    elif doc_type == "html":
        text = html_to_text(decode_text(data, name, param))
    else:
        text = decode_text(data, name, param)
    if not text.strip():
        raise InvalidRequest(f"File '{name}' has no text.", param=param)
    return Extracted(text=text, doc_type=doc_type, language=language, pages=pages)
