"""HTML to readable plain text for the model: BeautifulSoup with the lxml parser.

Scripts, styles, navigation and other chrome are dropped; block elements become line
breaks, headings get ``#`` marks and list items ``-``, so the structure survives
without the markup. Blocking (parsing a large page takes a while): call it in a thread.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

_DROP = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "canvas",
    "iframe",
    "object",
    "embed",
    "nav",
    "aside",
    "footer",
    "form",
    "button",
    "select",
    "head",
)
_BLOCKS = (
    "address",
    "article",
    "blockquote",
    "dd",
    "details",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "header",
    "hr",
    "main",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tr",
    "ul",
)
_HEADINGS = {f"h{level}": "#" * level for level in range(1, 7)}
_SPACES = re.compile(r"[ \t\r\f\v\n]+")
_RUNS = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_SHIELD = str.maketrans({"\n": "\x00", " ": "\x01", "\t": "\x02"})
_UNSHIELD = str.maketrans({"\x00": "\n", "\x01": " ", "\x02": "\t"})


def html_to_text(body: bytes, charset: str | None = None, media_type: str = "") -> tuple[str, str]:
    """``(title, text)`` of an HTML document given as bytes (the parser finds the
    encoding from ``charset``, a ``<meta>`` tag, or the bytes themselves).
    ``media_type`` is unused: it keeps the signature of web_fetch's other converter."""
    soup = BeautifulSoup(body, "lxml", from_encoding=charset)
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    for tag in soup.find_all(_DROP):
        tag.decompose()
    for tag in soup.find_all(hidden=True):
        tag.decompose()
    for string in soup.find_all(string=True):
        if type(string) is not NavigableString:
            continue
        if string.find_parent("pre") is None:
            string.replace_with(_SPACES.sub(" ", string))
        else:  # shield preformatted text from the whitespace clean-up below
            string.replace_with(string.translate(_SHIELD))
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(["td", "th"]):
        tag.insert_after(" | ")
    for tag in soup.find_all("li"):
        tag.insert_before("\n- ")
    for name, marks in _HEADINGS.items():
        for tag in soup.find_all(name):
            _wrap(tag, f"\n\n{marks} ", "\n\n")
    for tag in soup.find_all(_BLOCKS):
        _wrap(tag, "\n\n" if tag.name in ("p", "pre", "blockquote") else "\n", "\n")
    root = soup.body or soup
    lines = (_clean_line(line) for line in root.get_text().splitlines())
    text = _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
    return _SPACES.sub(" ", title).strip(), text.translate(_UNSHIELD)


def _clean_line(line: str) -> str:
    return _RUNS.sub(" ", line).strip().removesuffix(" |")


def _wrap(tag: Tag, before: str, after: str) -> None:
    tag.insert_before(before)
    tag.insert_after(after)
