"""Every desktop page renders over an installation that has been used (issue 15, point 1).

The Wizards page answered 500 once an agent wizard had run: the suite had opened it only
over empty tables or one kind of run. Here every page of the URL configuration (the
Administration desktop, its ``?fragment=1``, every filter option and page link it offers,
the Agent desktop and its fragments, the caller's pages and the log-in pages) is opened as
the user it is for, over the data ``realistic.build`` made through the product's services,
and must answer 200 with its content; the POST-only actions must refuse a GET (405).
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from collabadmin.bidi import CONTROLS
from tests.pages import urls
from tests.pages.realistic import Installation

pytestmark = pytest.mark.django_db

# What a page shows of the data, unfiltered (its filters and fragment show part of it).
SHOWS = {
    "/": ["routing-a", "routing-b", "routing-a-mb-1", "Server failed", "Link down"],
    "/console/wizards/": ["Completed", "Failed", "Interrupted", "Running", "1007", "5004", "1003"],
    "/console/sync/": ["Verifying", "routing-a"],
    "/console/sessions/": ["Ada Lovelace", "Administrator ended", "Transit failed", "Server failed", "Caller left"],
    "/console/agents/": ["Maria Lopez", "Aisha Khan", "Sofia Rossi"],
    "/console/queue/": ["Hedy Lamarr", "Barbara Liskov"],
    "/console/alerts/notifications/": ["On-call webhook", "Operations mail", "Alert raised", "Alert cleared"],
    "/console/timeline/": ["Server failed", "Link down", "Manual switchover", "Give callers who hung up two minutes"],
    "/agent/": ["Ada Lovelace", "Grace Hopper"],
}
# Refused by these (the staff pages' live fragment included): the log-in answers instead.
POST_ONLY = 405


def clients(data: Installation) -> dict[str, Client]:
    # A view's exception is a 500 in the list of problems, not the end of the test.
    staff, agent = Client(raise_request_exception=False), Client(raise_request_exception=False)
    staff.force_login(data.admin)
    agent.force_login(data.agent.user)
    return {urls.STAFF: staff, urls.AGENT: agent, urls.ANONYMOUS: Client(raise_request_exception=False)}


def problems_of(page: urls.Page, path: str, response) -> list[str]:
    """Not a 200, or not a page a person can use: a document without its main content and
    heading, a fragment without text, an unfiltered page without the rows it must show, text
    with bidirectional controls (issue 15, point 11)."""
    if response.status_code != 200:
        return [f"{path} as {page.viewer}: {response.status_code}"]
    html = response.content.decode()
    missing = [text for text in SHOWS.get(page.route, []) if path == page.path and text not in html]
    if html.lstrip().lower().startswith("<!doctype"):
        missing += [part for part in ("<main", "<h1", "</html>") if part not in html]
    elif len(re.sub(r"<[^>]+>|\s+", "", html)) < 10:
        missing.append("any text")
    problems = [f"{path} as {page.viewer} lacks {', '.join(missing)}"] if missing else []
    if any(control in html for control in CONTROLS):
        problems.append(f"{path} as {page.viewer} shows bidirectional control characters")
    return problems


def test_the_realistic_data_has_every_state_the_pages_can_show(installation):
    from failover.choices import SyncRunState, WizardKind, WizardState
    from sessions.choices import EndReason, SessionState

    runs = installation.wizard_runs
    assert {run.kind for run in runs} == set(WizardKind.values)
    assert {run.state for run in runs} == set(WizardState.values)
    assert {run.state for run in installation.sync_runs} >= {
        SyncRunState.COMPLETED,
        SyncRunState.IN_SYNC,
        SyncRunState.STALE,
        SyncRunState.PLANNED,
        SyncRunState.VERIFYING,
    }
    sessions = installation.sessions.values()
    assert {s.state for s in sessions} == set(SessionState.values)
    assert {s.end_reason for s in sessions} == set(EndReason.values)
    assert any(control in s.caller_name for s in sessions for control in CONTROLS)
    # A server in maintenance: the overview's drain notice and "End silence" are checked too.
    patched = installation.servers["routing-c"]
    patched.refresh_from_db()
    assert patched.is_draining
    assert patched.silences.filter(ended_at__isnull=True).exists()


def test_every_page_renders_with_its_filters_pages_and_fragment(installation):
    by_viewer = clients(installation)
    problems: list[str] = []
    opened = 0
    for page in urls.pages(installation):
        client = by_viewer[page.viewer]
        response = client.get(page.path)
        opened += 1
        if response.status_code == POST_ONLY:
            continue  # an action: the CSRF and action tests post to it
        problems += problems_of(page, page.path, response)
        if response.status_code != 200 or page.viewer != urls.STAFF:
            continue
        for variant in [page.path, *urls.variants(page.path, response.content.decode())]:
            if variant != page.path:
                opened += 1
                problems += problems_of(page, variant, client.get(variant))
            fragment = f"{variant}{'&' if '?' in variant else '?'}fragment=1"
            opened += 1
            problems += problems_of(page, fragment, client.get(fragment))

    assert problems == [], "\n".join(problems)
    assert opened > 100  # the enumeration found the pages, their filters and their fragments
