"""Template descriptions: Markdown in, HTML that runs nothing and links nowhere unsafe out."""

from __future__ import annotations

import re

import pytest

from pipelines_ui.markdown import render_markdown


def hrefs(html: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', html)


def test_markdown_becomes_html():
    html = render_markdown("# Title\n\n* **one**\n* `two`\n\n```\ncode <b>\n```")
    assert "<h1>Title</h1>" in html
    assert "<li><strong>one</strong></li>" in html
    assert "<code>two</code>" in html
    assert "<pre><code>code &lt;b&gt;\n</code></pre>" in html


@pytest.mark.parametrize(
    "source",
    [
        "<script>alert(1)</script>",
        "before <script>alert(1)</script> after",
        "<div>\n<script>alert(1)</script>\n</div>",
        '<img src="x" onerror="alert(1)">',
        '<a href="https://example.com" onclick="alert(1)">x</a>',
        '<p onmouseover="alert(1)">hover</p>',
        "<iframe src='https://evil.example'></iframe>",
        "<style>body{display:none}</style>",
        "<svg onload=alert(1)>",
    ],
)
def test_raw_html_is_shown_as_text_never_as_markup(source):
    html = render_markdown(source)
    for tag in ("<script", "<img", "<iframe", "<style", "<svg", "<div"):
        assert tag not in html.lower()
    assert not re.search(r"<[a-z]+[^>]*\bon[a-z]+=", html, re.IGNORECASE)
    assert "&lt;" in html  # the text is still there, escaped


@pytest.mark.parametrize(
    "source",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](  javascript:alert(1))",
        "[x](javascript&#58;alert(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](vbscript:msgbox(1))",
        "<javascript:alert(1)>",
        "[x][ref]\n\n[ref]: javascript:alert(1)",
    ],
)
def test_unsafe_links_lose_their_target(source):
    html = render_markdown(source)
    assert "javascript" not in " ".join(hrefs(html)).lower()
    assert not any(h.lower().startswith(("data:", "vbscript:", "javascript:")) for h in hrefs(html))
    assert "javascript:" not in html.lower() or "&lt;javascript:" in html.lower()


def test_safe_links_stay_with_noopener():
    html = render_markdown(
        "[docs](https://example.com/a?b=1) [rel](/templates/) <https://example.org> <me@example.com>"
    )
    assert hrefs(html) == ["https://example.com/a?b=1", "/templates/", "https://example.org", "mailto:me@example.com"]
    assert html.count('rel="noopener noreferrer"') == 4


def test_empty_is_empty():
    assert render_markdown("") == ""
    assert render_markdown("   \n") == ""


def test_unclosed_brackets_are_scanned_once_per_paragraph(monkeypatch):
    # Python-Markdown scanned from every `[` to the end of the paragraph: 25,000 of them took 100 s.
    from markdown.inlinepatterns import LinkInlineProcessor

    scanned = []
    original = LinkInlineProcessor.getText

    def counting(self, data, index):
        scanned.append(len(data) - index)
        return original(self, data, index)

    monkeypatch.setattr(LinkInlineProcessor, "getText", counting)
    html = render_markdown("[" * 20_000)
    assert "[" * 100 in html
    assert sum(scanned) < 100_000


def test_unclosed_link_destinations_are_scanned_a_bounded_length(monkeypatch):
    # Each `[](` was scanned to the end of the paragraph for its `)`: 16,000 of them took 40 s.
    from markdown.inlinepatterns import LinkInlineProcessor

    scanned = []
    original = LinkInlineProcessor.getLink

    def counting(self, data, index):
        scanned.append(len(data) - index)
        return original(self, data, index)

    monkeypatch.setattr(LinkInlineProcessor, "getLink", counting)
    render_markdown("[](" * 5_000)
    assert sum(scanned) < 2_000_000


def test_many_links_are_all_made():
    html = render_markdown(" ".join(f"[l{i}](/{i})" for i in range(2_000)))
    assert html.count("<a ") == 2_000


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("[a [b] c](https://x.example/)", '<a href="https://x.example/" rel="noopener noreferrer">a [b] c</a>'),
        ("![alt](https://x.example/i.png) [x]", "[x]"),
        ("[one] [two](https://x.example/) [", '<a href="https://x.example/" rel="noopener noreferrer">two</a>'),
        ("[ref]\n\n[ref]: https://x.example/", '<a href="https://x.example/" rel="noopener noreferrer">ref</a>'),
        ("[[nested]](https://x.example/)", '<a href="https://x.example/" rel="noopener noreferrer">[nested]</a>'),
    ],
)
def test_links_still_found_with_their_brackets(source, expected):
    assert expected in render_markdown(source)
