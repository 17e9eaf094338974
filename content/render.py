"""Markdown to HTML that is safe to show: markdown-it-py renders, nh3 (ammonia) sanitizes.

Authors may write inline HTML (``<details>``, ``<kbd>``…); whatever they write, the sanitizer is
the last word: only its allowlisted tags and attributes survive, so ``<script>``, ``on*=`` event
handlers, ``style``, ``<iframe>`` and ``javascript:``/``data:`` URLs never reach a reader. Links get
``rel="noopener noreferrer nofollow"``.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
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


class _VersionHtml:
    """Rendered bodies by version id, least recently used first out, within a size budget:
    versions are immutable, so a published page is rendered once per process, not per read."""

    def __init__(self, budget_chars: int) -> None:
        self.budget = budget_chars
        self.used = 0
        self.entries: OrderedDict[uuid.UUID, str] = OrderedDict()

    def get(self, version_id: uuid.UUID, source: str) -> str:
        html = self.entries.get(version_id)
        if html is not None:
            self.entries.move_to_end(version_id)
            return html
        html = markdown_to_html(source)
        if len(html) <= self.budget // 16:  # a huge page is rendered every time rather than flush the rest
            self.entries[version_id] = html
            self.used += len(html)
            while self.used > self.budget:
                self.used -= len(self.entries.popitem(last=False)[1])
        return html


_version_html = _VersionHtml(budget_chars=16_000_000)


def version_html(version_id: uuid.UUID, source: str) -> str:
    """A version's body as sanitized HTML (cached by version: the body of a version never changes)."""
    return _version_html.get(version_id, source)


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
