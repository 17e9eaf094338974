"""Email templates: Jinja2 in its sandbox, with the limits the sandbox itself does not have.

LIBRARIES.md: ``SandboxedEnvironment`` stops attribute escapes, not CPU or memory blow-ups
(``'x' * 50_000_000``), and autoescape is off by default. So:

- the HTML body renders with autoescape on; a variable's value is also Markdown-escaped, so a
  customer's name can't become a link or a heading; the result goes through Markdown and the HTML
  sanitizer (render.py) like any CMS body. The subject and the plain-text part render without
  HTML escaping (they are not HTML), and the subject is folded onto one line (no header injection).
- ``StrictUndefined``: a variable the caller did not give is a 422 naming it, not an empty string.
- limits: the template source is at most ``MAX_TEMPLATE_CHARS``; ``*``, ``**`` and ``%`` are
  intercepted and refused when they would build something huge; padding methods and filters are
  bounded or refused; ``batch`` and ``slice`` make at most ``MAX_BATCH`` groups (with a filler they
  build every group in library code, beyond the reach of the trace); ``lipsum`` is not offered (it
  writes any number of paragraphs in one call); a trace on the template's own frames stops a render
  that computes for longer than ``RENDER_SECONDS`` of its thread's CPU time (the time budget) or holds a value over
  ``MAX_VALUE_CHARS``, and the output stops at ``MAX_OUTPUT_CHARS`` (the memory budget).
  ``render_email`` runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import html
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import do_batch, do_center, do_indent, do_join, do_replace, do_slice
from jinja2.runtime import Namespace
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from content.render import markdown_to_html
from core.errors import InvalidInput

MAX_TEMPLATE_CHARS = 64_000
MAX_SUBJECT_CHARS = 255
MAX_OUTPUT_CHARS = 256_000
MAX_VALUE_CHARS = 256_000
MAX_PAD_WIDTH = 200
MAX_POWER_BITS = 4_096
MAX_BATCH = 1_000  # groups made by batch() or slice()
RENDER_SECONDS = 2.0

TEMPLATE_FILENAME = "<template>"  # what Jinja names the code of templates built from strings
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")
_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")
# Width-padding and whole-string rewriting methods: one call could allocate without bound.
_REFUSED_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "format", "format_map",
                              "replace", "join", "translate", "maketrans"})


class TemplateError(InvalidInput):
    code, message = "template_error", "The template cannot be rendered."


class MissingVariable(InvalidInput):
    code = "missing_template_variable"


class RenderLimit(TemplateError):
    code, message = "template_limit_exceeded", "The template exceeds the rendering limits."


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes, list, tuple, dict, set)) else 0


def _refuse_if_huge(size: int) -> None:
    if size > MAX_VALUE_CHARS:
        raise RenderLimit(details={"limit": "value_size", "max": MAX_VALUE_CHARS})


class BoundedNamespace(Namespace):
    """``namespace()`` whose attributes can't grow past the value limit (``{% set ns.x = ns.x ~ ns.x %}``)."""

    def __setitem__(self, name: str, value: Any) -> None:
        _refuse_if_huge(_size(value))
        super().__setitem__(name, value)


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if _size(sequence) and isinstance(count, int):
                    _refuse_if_huge(_size(sequence) * max(count, 0))
        elif operator == "**" and isinstance(left, int) and isinstance(right, int):
            if right > 0 and max(abs(left).bit_length(), 1) * right > MAX_POWER_BITS:
                raise RenderLimit(details={"limit": "power", "max_bits": MAX_POWER_BITS})
        elif operator == "%" and isinstance(left, str):
            raise SecurityError("string formatting with % is not allowed; use {{ value }}")
        return super().call_binop(context, operator, left, right)

    # Checked before Jinja's own lookup: it wraps ``str.format`` in its formatter before asking
    # ``is_safe_attribute``, and that formatter pads to any width.
    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, str) and attribute in _REFUSED_METHODS:
            return self.unsafe_undefined(obj, attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, str) and isinstance(argument, str) and argument in _REFUSED_METHODS:
            return self.unsafe_undefined(obj, argument)
        return super().getitem(obj, argument)


def _bounded_width(filter_: Callable[..., Any], position: int, default: int) -> Callable[..., Any]:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        width = kwargs.get("width", args[position] if len(args) > position else default)
        if isinstance(width, int) and width > MAX_PAD_WIDTH:
            raise RenderLimit(details={"limit": "width", "max": MAX_PAD_WIDTH})
        return filter_(*args, **kwargs)

    return bounded


def _bounded_groups(filter_: Callable[..., Any], name: str) -> Callable[..., Any]:
    # Jinja passes the environment first to filters marked so (slice is): the count follows the value.
    position = 2 if getattr(filter_, "jinja_pass_arg", None) else 1

    @functools.wraps(filter_)  # keeps the pass-arg mark
    def bounded(*args: Any, **kwargs: Any) -> Any:
        count = args[position] if len(args) > position else kwargs.get(name)
        if isinstance(count, int) and count > MAX_BATCH:
            raise RenderLimit(details={"limit": "batch", "max": MAX_BATCH})
        return filter_(*args, **kwargs)

    return bounded


def _bounded_join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
    items = list(value)
    _refuse_if_huge(sum(_size(item) or len(str(item)) for item in items) + len(str(d)) * len(items))
    return do_join(eval_ctx, items, d, attribute)


def _bounded_replace(eval_ctx: Any, s: str, old: str, new: str, count: int | None = None) -> str:
    occurrences = (len(s) + 1) if old == "" else str(s).count(old)
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    _refuse_if_huge(len(s) + occurrences * max(len(new) - len(old), 0))
    return do_replace(eval_ctx, s, old, new, count)


_bounded_join.jinja_pass_arg = do_join.jinja_pass_arg  # type: ignore[attr-defined]
_bounded_replace.jinja_pass_arg = do_replace.jinja_pass_arg  # type: ignore[attr-defined]


def _markdown_literal(value: Any) -> Any:
    """A variable's value shows as itself in the Markdown body: its Markdown syntax is escaped."""
    if isinstance(value, Markup) or value is None:
        return value
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value))


def _environment(*, for_html: bool) -> BoundedSandbox:
    options: dict[str, Any] = {"autoescape": True, "finalize": _markdown_literal} if for_html else {"autoescape": False}
    environment = BoundedSandbox(undefined=StrictUndefined, keep_trailing_newline=True, **options)
    environment.globals["namespace"] = BoundedNamespace
    del environment.globals["lipsum"]
    environment.filters["batch"] = _bounded_groups(do_batch, "linecount")
    environment.filters["slice"] = _bounded_groups(do_slice, "slices")
    environment.filters["center"] = _bounded_width(do_center, 1, 80)
    environment.filters["indent"] = _bounded_width(do_indent, 1, 4)
    environment.filters["join"] = _bounded_join
    environment.filters["replace"] = _bounded_replace
    del environment.filters["format"]  # "%999999999s"|format(x): see the % operator above
    return environment


_HTML = _environment(for_html=True)
_TEXT = _environment(for_html=False)


_SIZED = frozenset({str, Markup, bytes, list, tuple, dict, set})


class _Guard:
    """A per-thread trace on template frames only: a deadline and a bound on what they hold.

    ``namespace()`` attributes are bounded where they are set (BoundedNamespace).
    """

    def __init__(self, seconds: float) -> None:
        # The thread's CPU time, not the wall clock: a loaded machine or a busy GIL must not fail a
        # template that does little; a template that computes for long is what the budget stops.
        self.deadline = time.thread_time() + seconds
        self.active = True

    def check(self, frame: FrameType) -> None:
        if not self.active:
            return
        if time.thread_time() > self.deadline:
            raise RenderLimit(details={"limit": "time", "max_seconds": RENDER_SECONDS})
        # Exact types, not isinstance against ABCs: this runs on every line of the template.
        for value in frame.f_locals.values():
            if type(value) in _SIZED and len(value) > MAX_VALUE_CHARS:
                _refuse_if_huge(len(value))

    def on_call(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != TEMPLATE_FILENAME:
            return None  # library and filter code: bounded by the inputs checked above
        self.check(frame)
        return self.on_line

    def on_line(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self.check(frame)
        return self.on_line


def _check_size(source: str, name: str) -> None:
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"The {name} template is longer than {MAX_TEMPLATE_CHARS} characters.",
                            code="template_too_large", details={"field": name, "max_chars": MAX_TEMPLATE_CHARS})


def _parse(environment: BoundedSandbox, source: str, name: str) -> nodes.Template:
    _check_size(source, name)
    try:
        return environment.parse(source)
    except TemplateSyntaxError as error:
        raise TemplateError(f"The {name} template has a syntax error on line {error.lineno}: {error.message}",
                            code="template_syntax_error",
                            details={"field": name, "line": error.lineno, "reason": error.message}) from None


def check_template(subject: str, body: str) -> None:
    """Refuse, at save time, an email template that can never render (too large, bad syntax)."""
    _parse(_TEXT, subject, "subject")
    _parse(_HTML, body, "body")


def _render(environment: BoundedSandbox, source: str, name: str, variables: dict[str, Any]) -> str:
    _parse(environment, source, name)
    template = environment.from_string(source)
    guard = _Guard(RENDER_SECONDS)
    previous = sys.gettrace()
    sys.settrace(guard.on_call)
    chunks = template.generate(variables)
    try:
        pieces: list[str] = []
        produced = 0
        for piece in chunks:
            produced += len(piece)
            if produced > MAX_OUTPUT_CHARS:
                raise RenderLimit(details={"limit": "output_size", "max": MAX_OUTPUT_CHARS})
            pieces.append(piece)
        return "".join(pieces)
    except UndefinedError as error:
        match = _UNDEFINED_NAME.search(str(error))
        variable = (match.group(1) or match.group(2)) if match else None
        raise MissingVariable(f"The {name} template uses {variable or 'a value'!r}, which was not given.",
                              details={"variable": variable, "field": name, "reason": str(error)}) from None
    except SecurityError as error:
        raise TemplateError(f"The {name} template does something the sandbox refuses: {error}",
                            code="template_refused", details={"field": name, "reason": str(error)}) from None
    except RenderLimit:
        raise
    except (ArithmeticError, TypeError, ValueError, LookupError, RecursionError, MemoryError) as error:
        raise TemplateError(f"The {name} template failed: {error}",
                            details={"field": name, "reason": f"{type(error).__name__}: {error}"}) from None
    finally:
        guard.active = False  # closing the generator below runs template code once more
        chunks.close()
        sys.settrace(previous)


def render_email_sync(subject: str, body: str, variables: dict[str, Any]) -> RenderedEmail:
    rendered_subject = " ".join(_render(_TEXT, subject, "subject", variables).split())[:MAX_SUBJECT_CHARS]
    fragment = markdown_to_html(_render(_HTML, body, "body", variables))
    document = (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(rendered_subject)}</title></head>\n<body>\n{fragment}</body></html>\n"
    )
    return RenderedEmail(rendered_subject, document, _render(_TEXT, body, "body", variables))


async def render_email(subject: str, body: str, variables: dict[str, Any]) -> RenderedEmail:
    """Render in a worker thread: a slow template must not stall the event loop."""
    return await asyncio.to_thread(render_email_sync, subject, body, variables)
