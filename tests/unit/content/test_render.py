"""Markdown rendering and sanitization: nothing executable reaches a reader."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from content.render import markdown_to_html, render_blocks, sanitize

ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    "<svg onload=alert(1)><circle/></svg>",
    '<iframe src="https://evil.example"></iframe>',
    '<div style="background:url(javascript:alert(1))" onclick="x()">s</div>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">d</a>',
    "<style>body{display:none}</style>",
    '<form action="https://evil.example"><input name=x></form>',
    "<details open ontoggle=alert(1)><summary>s</summary></details>",
]


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))


def _inert(html: str) -> None:
    """No executable element, no event handler, no style, no URL outside http(s)/mailto."""
    parser = _Elements()
    parser.feed(html)
    for tag, attrs in parser.elements:
        assert tag not in {"script", "style", "iframe", "svg", "form", "input", "object", "embed"}, html
        for name, value in attrs.items():
            assert not name.startswith("on") and name != "style", html
            if name in {"href", "src", "action"} and value:
                assert value.split(":", 1)[0].lower() in {"http", "https", "mailto"} or ":" not in value, html


@pytest.mark.parametrize("attack", ATTACKS)
def test_stored_xss_attempts_render_inert(attack):
    _inert(markdown_to_html(f"Intro\n\n{attack}\n\nOutro"))
    _inert(markdown_to_html(attack))


def test_markdown_features_survive():
    html = markdown_to_html("# Title\n\n**bold** _em_ [link](https://example.com)\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                            "```python\nprint(1)\n```\n\n~~gone~~")
    assert "<h1>Title</h1>" in html and "<strong>bold</strong>" in html and "<em>em</em>" in html
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">link</a>' in html
    assert "<table>" in html and '<code class="language-python">' in html and "<s>gone</s>" in html


def test_script_content_is_dropped_not_shown():
    assert "alert" not in markdown_to_html("<script>alert(1)</script>")


def test_landing_blocks_keep_data_and_only_sanitized_html():
    blocks = render_blocks([
        {"type": "hero", "heading": "<b>plain text</b>", "markdown": "**hi** <img src=x onerror=alert(1)>"},
        {"type": "raw", "html": "<p onclick=x()>ok</p><script>bad()</script>"},
        {"type": "fake", "html": {"not": "a string"}},
        "not a block",
    ])
    assert blocks[0]["heading"] == "<b>plain text</b>"  # data, escaped by whoever renders it
    assert "<strong>hi</strong>" in blocks[0]["html"] and "onerror" not in blocks[0]["html"]
    assert blocks[1]["html"] == "<p>ok</p>"
    assert "html" not in blocks[2]
    assert len(blocks) == 3


def test_sanitize_keeps_safe_links_and_images():
    html = sanitize('<a href="mailto:a@example.com" title="t">m</a><img src="https://x.example/a.png" alt="a">')
    assert 'href="mailto:a@example.com"' in html and 'src="https://x.example/a.png"' in html
