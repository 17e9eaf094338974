"""Markdown to HTML that is safe to show: markdown-it-py renders, nh3 (ammonia) sanitizes.

Authors may write inline HTML (``<details>``, ``<kbd>``…); whatever they write, the sanitizer is
the last word: only its allowlisted tags and attributes survive, so ``<script>``, ``on*=`` event
handlers, ``style``, ``<iframe>`` and ``javascript:``/``data:`` URLs never reach a reader. Links get
``rel="noopener noreferrer nofollow"``.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any

import nh3
from markdown_it import MarkdownIt

# Tags removed together with their content (the rest of the disallowed tags are unwrapped).
_DROP_WITH_CONTENT = {"script", "style", "iframe", "object", "embed", "template", "noscript", "textarea", "select"}
# LIBRARIES.md: ``attributes=`` replaces nh3's defaults, so merge into them.
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES.setdefault("code", set()).add("class")  # fenced code: class="language-python"
_ATTRIBUTES.setdefault("a", set()).add("title")
_ATTRIBUTES.setdefault("img", set()).add("title")
_URL_SCHEMES = {"http", "https", "mailto"}

_markdown = MarkdownIt("commonmark", {"html": True, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)


def sanitize(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(nh3.ALLOWED_TAGS) - _DROP_WITH_CONTENT,
        clean_content_tags=_DROP_WITH_CONTENT,
        attributes=_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def markdown_to_html(source: str) -> str:
    """Markdown (with inline HTML) → sanitized HTML fragment."""
    return sanitize(_markdown.render(source))


@lru_cache(maxsize=1024)
def version_html(version_id: uuid.UUID, source: str) -> str:
    """A version's body as HTML; versions are immutable, so the result is cached by version."""
    return markdown_to_html(source)


def render_blocks(blocks: Any) -> list[dict[str, Any]]:
    """Landing blocks as stored, except that ``html`` is always safe: a string ``markdown`` field
    is rendered into it, an ``html`` field the author wrote is sanitized, anything else in
    ``html`` is dropped. Other fields are plain text (a client escapes them like any JSON string).
    """
    rendered = []
    for block in blocks if isinstance(blocks, list) else []:
        if isinstance(block, dict):
            block = dict(block)
            html = block.pop("html", None)
            if isinstance(block.get("markdown"), str):
                block["html"] = markdown_to_html(block["markdown"])
            elif isinstance(html, str):
                block["html"] = sanitize(html)
            rendered.append(block)
    return rendered
