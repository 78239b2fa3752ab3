"""File loaders: text, markdown, HTML, PDF (a real one, built with pypdf) and code."""

from __future__ import annotations

import pytest

from extensions.rag.loaders import doc_type_of, extract, html_to_text
from proxy.errors import InvalidRequest
from tests.support.rag_fakes import make_pdf

HTML = b"""<!doctype html>
<html><head><title>Lighthouse keeping</title>
<style>body { color: red }</style><script>var tracking = "secret";</script></head>
<body>
  <nav><a href="/">Home</a></nav>
  <h1>Keeping a light</h1>
  <p>The lamp must be <b>trimmed</b> every&nbsp;evening.<br>Oil is stored below.</p>
  <ul><li>Wick</li><li>Lens &amp; mirror</li></ul>
  <table><tr><th>Day</th><th>Task</th></tr><tr><td>Monday</td><td>Polish</td></tr></table>
  <noscript>Enable JavaScript</noscript>
</body></html>"""


def test_html_becomes_readable_text() -> None:
    text = html_to_text(HTML.decode())
    assert "tracking" not in text and "color: red" not in text
    assert "Enable JavaScript" not in text
    assert "Lighthouse keeping" in text
    assert "# Keeping a light" in text
    assert "The lamp must be trimmed every evening.\nOil is stored below." in text
    assert "- Wick" in text and "- Lens & mirror" in text
    assert "Monday | Polish" in text
    assert "\n\n\n" not in text


def test_extract_html_file() -> None:
    extracted = extract("guide.HTML", HTML)
    assert extracted.doc_type == "html"
    assert "trimmed every evening" in extracted.text


def test_markdown_and_text_are_kept_as_written() -> None:
    markdown = "# Title\n\nSome *emphasis* and a [link](http://x).\n"
    extracted = extract("notes.md", markdown.encode())
    assert extracted.doc_type == "markdown" and extracted.text == markdown
    assert extract("a.txt", b"\xef\xbb\xbfplain").text == "plain"  # BOM dropped
    assert extract("latin.txt", "café".encode("cp1252")).text == "café"
    assert extract("utf16.txt", "wide text".encode("utf-16")).text == "wide text"


def test_source_code_is_recognised_by_extension_and_name() -> None:
    assert doc_type_of("src/app/main.py") == ("code", "python")
    assert doc_type_of("lib.RS") == ("code", "rust")
    assert doc_type_of("deploy/Dockerfile") == ("code", "dockerfile")
    assert doc_type_of("Makefile") == ("code", "make")
    assert doc_type_of("photo.jpg") is None
    extracted = extract("util.ts", b"export const x = 1;\n")
    assert (extracted.doc_type, extracted.language) == ("code", "typescript")


def test_pdf_text_per_page_with_positions() -> None:
    data = make_pdf(["First page about tides.", "", "Third page about\nstorms."])
    extracted = extract("report.pdf", data)
    assert extracted.doc_type == "pdf"
    assert extracted.pages is not None
    pages = {page: extracted.text[start:end] for page, start, end in extracted.pages}
    assert set(pages) == {1, 3}  # the empty page has no span
    assert "tides" in pages[1]
    assert "storms" in pages[3] and "Third page about" in pages[3]


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("image.png", b"\x89PNG....", "unsupported type"),
        ("empty.txt", b"", "is empty"),
        ("blank.md", b"  \n\n ", "is empty"),
        ("binary.txt", b"abc\x00\x01\x02def", "binary"),
        ("broken.pdf", b"%PDF-1.4 this is not really a pdf", "cannot be read"),
        ("scanned.pdf", None, "no extractable text"),
        ("only-markup.html", b"<html><script>x()</script></html>", "no text"),
    ],
)
def test_bad_files_are_invalid_requests_naming_them(
    name: str, data: bytes | None, fragment: str
) -> None:
    if data is None:
        data = make_pdf(["", ""])
    with pytest.raises(InvalidRequest) as caught:
        extract(name, data, "file")
    assert caught.value.http_status == 400
    assert caught.value.param == "file"
    assert name in caught.value.message and fragment in caught.value.message
