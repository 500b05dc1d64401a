"""Markdown from users (template descriptions) rendered to HTML that is safe to put in a page.

Two layers, so that a gap in one is not a hole: Python-Markdown runs with its raw-HTML
handlers removed, so `<script>` in the source comes out as the text "<script>"; then nh3
(Ammonia) keeps only the tags Markdown itself writes and links whose scheme is http, https or
mailto (relative ones too), each with `rel="noopener noreferrer"`.
"""

from __future__ import annotations

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


def _converter() -> markdown_lib.Markdown:
    md = markdown_lib.Markdown(extensions=["fenced_code", "tables", "sane_lists"], output_format="html")
    # Without these, HTML in the source is not passed through but escaped as text.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
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
