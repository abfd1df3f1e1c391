"""The Content Security Policy: on every HTML page, strict everywhere, one narrower
exception (inline styles) for the browsable API and its Swagger UI docs; and no template
or script of ours needs more (no inline scripts, event handlers or style attributes)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.django_db

HEADER = "Content-Security-Policy"


def directives(response) -> dict[str, list[str]]:
    policy = response[HEADER]
    parsed = {}
    for part in policy.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


@pytest.mark.parametrize(
    ("client_fixture", "path"),
    [
        ("admin_client", "/"),
        ("agent_client", "/agent/"),
        ("anonymous_client", "/request/"),
        ("anonymous_client", "/login/"),
        ("anonymous_client", "/agent/login/"),
        ("anonymous_client", "/admin/login/"),
        ("admin_client", "/admin/"),
    ],
)
def test_every_page_carries_the_strict_policy(request, server, client_fixture, path):
    client = request.getfixturevalue(client_fixture)

    response = client.get(path)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    policy = directives(response)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]


def test_a_refused_page_carries_it_too(anonymous_client):
    # An error page is an HTML page as well.
    response = anonymous_client.get("/no-such-page/")

    assert response.status_code == 404
    assert directives(response)["script-src"] == ["'self'"]


def test_the_api_docs_allow_inline_styles_but_still_no_inline_script(admin_client):
    page = admin_client.get("/api/v1/docs/")

    assert page.status_code == 200
    policy = directives(page)
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    html = page.content.decode()
    # Swagger UI from our own static files (drf-spectacular-sidecar), its start-up script a
    # same-origin file: every <script> has a src on this site.
    scripts = re.findall(r"<script([^>]*)>", html)
    assert scripts
    for attributes in scripts:
        source = re.search(r'src="([^"]+)"', attributes)
        assert source, f"inline script on the docs page: <script{attributes}>"
        assert source.group(1).startswith("/"), source.group(1)
    start_up = re.findall(r'src="(/api/v1/docs/\?[^"]*script[^"]*)"', html)
    assert start_up
    script = admin_client.get(start_up[0].replace("&amp;", "&"))
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()


def test_json_responses_are_left_alone(admin_client):
    response = admin_client.get("/api/v1/status/")

    assert response["Content-Type"] == "application/json"
    assert HEADER not in response


def test_report_only_mode_sends_the_report_only_header(settings, anonymous_client):
    from django.test import Client

    settings.CSP_REPORT_ONLY = True
    response = Client().get("/login/")  # a new client: the middleware reads the setting at start-up

    assert HEADER not in response
    assert directives_of(response["Content-Security-Policy-Report-Only"])["script-src"] == ["'self'"]


def directives_of(policy: str) -> dict[str, list[str]]:
    return {name: sources for name, *sources in (part.split() for part in policy.split(";"))}


# --- Nothing of ours needs more than the policy allows ------------------------------------------

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[a-z][^>]*\sstyle\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"""(href|action|src)\s*=\s*["']\s*javascript:""", re.IGNORECASE)


def our_templates() -> list[Path]:
    return sorted((ROOT / "templates").rglob("*.html"))


def test_there_are_templates_to_check():
    assert len(our_templates()) > 10


@pytest.mark.parametrize("pattern", [INLINE_SCRIPT, EVENT_HANDLER, STYLE_ATTRIBUTE, JAVASCRIPT_URL], ids=str)
def test_no_template_has_what_the_policy_refuses(pattern):
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in our_templates()
        for match in pattern.finditer(path.read_text())
        # JSON data blocks are not executed (json_script): allowed.
        if "application/json" not in match.group(0)
    ]

    assert offenders == []


STRING_EVAL = re.compile(r"\beval\(|new Function\(|setTimeout\(\s*[\"'`]|setInterval\(\s*[\"'`]")
# A style attribute written as a string is refused like one in a template (CSSOM
# assignments such as element.style.color = ... are allowed by the policy).
STYLE_BY_STRING = re.compile(r"""setAttribute\(\s*["']style["']|\sstyle=""")


def test_no_script_of_ours_evaluates_strings_or_writes_style_attributes():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "static").rglob("*.js"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if STRING_EVAL.search(line) or STYLE_BY_STRING.search(line)
    ]

    assert offenders == []
