"""Markdown from users (template descriptions) rendered to HTML that is safe to put in a page.

Two layers, so that a gap in one is not a hole: Python-Markdown runs with its raw-HTML
handlers removed, so `<script>` in the source comes out as the text "<script>"; then nh3
(Ammonia) keeps only the tags Markdown itself writes and links whose scheme is http, https or
mailto (relative ones too), each with `rel="noopener noreferrer"`.
"""

from __future__ import annotations

import re

import markdown as markdown_lib
import nh3
from django.utils.safestring import SafeString, mark_safe

MAX_SOURCE_CHARS = 50_000

ALLOWED_TAGS = frozenset(
    {
        "a",
        "blockquote",
        "br",
        "code",
        "del",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "strong",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "ul",
    }
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "td": {"align"}, "th": {"align"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})


# Python-Markdown's link patterns scan from each `[` to its `]` (or to the end of the paragraph when
# there is none): a paragraph of 25,000 `[` took 100 s of a page process. These find each bracket's
# match once per paragraph instead; what a link is stays the same.
LINK_PATTERNS = ("reference", "link", "image_link", "image_reference", "short_reference", "short_image_ref")


def _closing_brackets(data: str) -> dict[int, int]:
    """Position of each `[` -> position of its matching `]` (unmatched ones are left out), in one pass."""
    closing: dict[int, int] = {}
    open_at: list[int] = []
    for match in re.finditer(r"[\[\]]", data):
        if match.group() == "[":
            open_at.append(match.start())
        elif open_at:
            closing[open_at.pop()] = match.start()
    return closing


class _BracketText:
    """A link pattern's `getText` (the text between `[` and its `]`), with the matches cached per text."""

    def __init__(self, processor) -> None:
        self.fallback = processor.getText
        self.data: str | None = None
        self.closing: dict[int, int] = {}

    def __call__(self, data: str, index: int) -> tuple[str, int, bool]:
        if index < 1 or data[index - 1] != "[":
            return self.fallback(data, index)
        if data is not self.data and data != self.data:
            self.data, self.closing = data, _closing_brackets(data)
        end = self.closing.get(index - 1)
        if end is None:
            # As the original: not handled; its callers use neither the text nor the index then.
            return "", len(data), False
        return data[index:end], end + 1, True


# A link's `(destination "title")` is scanned the same way, to its `)` or to the end of the
# paragraph: 16,000 `[](` took 40 s. Its parentheses and quotes follow rules too tangled to
# index, so a page gets this many characters of such scans; past them, `[..](` is plain text.
MAX_LINK_SCAN = 1_000_000


class _LinkScanBudget:
    """A link pattern's `getLink`, refused once the conversion's scans have used MAX_LINK_SCAN characters."""

    def __init__(self) -> None:
        self.left = MAX_LINK_SCAN

    def wrap(self, get_link):
        def bounded(data: str, index: int) -> tuple[str, str | None, int, bool]:
            if self.left <= 0:
                return "", None, index, False
            href, title, end, handled = get_link(data, index)
            self.left -= (end - index) if handled else (len(data) - index)
            return href, title, end, handled

        return bounded


def _converter() -> markdown_lib.Markdown:
    md = markdown_lib.Markdown(extensions=["fenced_code", "tables", "sane_lists"], output_format="html")
    # Without these, HTML in the source is not passed through but escaped as text.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    for name in LINK_PATTERNS:
        if name in md.inlinePatterns:
            processor = md.inlinePatterns[name]
            processor.getText = _BracketText(processor)
    budget = _LinkScanBudget()
    for name in ("link", "image_link"):
        processor = md.inlinePatterns[name]
        processor.getLink = budget.wrap(processor.getLink)
    return md


def sanitize_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags={"script", "style"},
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def render_markdown(source: str) -> SafeString:
    """`source` as sanitized HTML, ready for a template ("" for empty source)."""
    if not source or not source.strip():
        return mark_safe("")
    html = _converter().convert(source[:MAX_SOURCE_CHARS])
    return mark_safe(sanitize_html(html))  # noqa: S308 - sanitized just above
