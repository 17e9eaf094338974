"""Email templates in the Jinja2 sandbox, with the limits the sandbox does not have."""

from __future__ import annotations

import pytest

from content.templating import (
    MissingVariable,
    RenderLimit,
    TemplateError,
    check_template,
    render_email,
    render_email_sync,
)

SUBJECT = "Welcome, {{ display_name }}"


def test_variables_are_escaped_in_html_and_plain_in_text_and_subject():
    name = 'Tom & <b>Jerry</b> *x* [y](javascript:alert(1))'
    email = render_email_sync(SUBJECT, "Hello **{{ display_name }}**!", {"display_name": name})
    assert email.subject == f"Welcome, {name}"
    assert "<strong>Tom &amp; &lt;b&gt;Jerry&lt;/b&gt; *x* [y](javascript:alert(1))</strong>" in email.html
    assert "<a " not in email.html and "<b>" not in email.html
    assert email.text == f"Hello **{name}**!"


def test_subject_is_one_line():
    email = render_email_sync("Hi {{ name }}", "body", {"name": "x\r\nBcc: victim@example.com"})
    assert "\n" not in email.subject and "\r" not in email.subject


def test_template_html_is_sanitized_too():
    email = render_email_sync("s", "<script>alert(1)</script><img src=x onerror=alert(1)>{{ v }}", {"v": 1})
    assert "<script" not in email.html and "onerror" not in email.html


def test_missing_variable_is_422_naming_it():
    with pytest.raises(MissingVariable) as missing:
        render_email_sync(SUBJECT, "Amount {{ amount }}", {"display_name": "Ada"})
    assert missing.value.status == 422 and missing.value.details["variable"] == "amount"
    with pytest.raises(MissingVariable) as missing:
        render_email_sync(SUBJECT, "body", {})
    assert missing.value.details == {**missing.value.details, "variable": "display_name", "field": "subject"}


def test_syntax_errors_are_found_at_save_time_with_the_line():
    with pytest.raises(TemplateError) as broken:
        check_template("ok", "line one\n{% if %}")
    assert broken.value.code == "template_syntax_error" and broken.value.details["line"] == 2


@pytest.mark.parametrize("body", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ '%999999999s' % 1 }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ 'x'.center(999999999) }}",
])
def test_sandbox_escapes_are_refused(body):
    with pytest.raises(TemplateError):
        render_email_sync("s", body, {})


@pytest.mark.parametrize("body", [
    "{{ 'x' * 50000000 }}",
    "{{ [1] * 50000000 }}",
    "{{ 2 ** 100000 }}",
    "{{ 'x'|center(999999999) }}",
    "{{ 'x'|indent(999999999) }}",
    "{{ 'a'|replace('', 'x' * 200000) }}",
    "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x }}",
    "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ f('x', 64) }}",
    "{% for i in range(100000) %}xxxxxxxxxxxxxxxx{% endfor %}",
])
def test_memory_blow_ups_stop_at_the_limits(body):
    with pytest.raises(RenderLimit):
        render_email_sync("s", body, {})


def test_cpu_blow_up_stops_at_the_deadline():
    with pytest.raises(RenderLimit) as limited:
        render_email_sync("s", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", {})
    assert limited.value.details["limit"] == "time"


def test_oversized_template_is_refused():
    with pytest.raises(TemplateError) as large:
        check_template("s", "x" * 70_000)
    assert large.value.code == "template_too_large"


async def test_rendering_runs_off_the_event_loop():
    email = await render_email(SUBJECT, "Hi {{ display_name }}", {"display_name": "Ada"})
    assert email.subject == "Welcome, Ada" and "<p>Hi Ada</p>" in email.html


def test_lipsum_is_not_offered():
    # lipsum(n) builds n paragraphs in library code, out of reach of the render guard.
    with pytest.raises(MissingVariable) as missing:
        render_email_sync("s", "{{ lipsum(100000) }}", {})
    assert missing.value.details["variable"] == "lipsum"


@pytest.mark.parametrize("body", [
    "{{ 'x'|batch(10000000, 'y')|list|length }}",
    "{{ [1]|slice(10000000, 0)|list|length }}",
    "{{ range(10)|batch(1001)|list|length }}",
])
def test_batch_and_slice_are_bounded(body):
    with pytest.raises(RenderLimit) as limited:
        render_email_sync("s", body, {})
    assert limited.value.details["limit"] == "batch"


def test_batch_and_slice_within_their_bounds_work():
    rendered = render_email_sync("s", "{% for row in range(6)|batch(3) %}{{ row|join(',') }};{% endfor %}"
                                      "{{ range(4)|slice(2)|list|length }}", {})
    assert rendered.text == "0,1,2;3,4,5;2"
