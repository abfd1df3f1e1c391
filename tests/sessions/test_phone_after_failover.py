"""Issue 20, point 1: the phone state of a session through a Media Blender failover.

The MB that set a phone leg up is the only one that can report its hang-up. Once the link
moves away from it, the phone state of its sessions is *unknown* (with the reason), the
agent ends them by hand or an optional policy ends them as ``phone_untracked``; a session
set up through the new MB is followed as before.

Real simulator processes and the real monitor (events and switchover), Celery eagerly,
as in test_media_blender_switchover.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from failover.choices import AuditAction, Health, PeerKind, PeerPriority
from failover.models import AuditEntry, FailoverEvent, Link, Peer, Policy
from failover.monitor.runner import monitor_in_thread
from failover.services.policy import policy_update
from failover.services.switchover import link_switchover
from sessions.choices import EndReason, PhoneLeg, SessionState
from sessions.models import CollaborationSession
from sessions.services.lifecycle import session_end
from sessions.services.phone_tracking import sessions_end_phone_untracked_after_grace, sessions_mark_phone_untracked
from sessions.services.requests import session_request
from sessions.tasks import phone_untracked_sweep
from tests.factories import AgentFactory, PeerFactory, peer_mark_connected
from tests.sessions.conftest import connected_peer, mb_agent_state, mb_agents, wait_until

pytestmark = [pytest.mark.django_db(transaction=True)]


def request() -> CollaborationSession:
    return session_request(caller_name="Ada Lovelace", skill_group_name="Sales", actor="caller")


def fresh(session: CollaborationSession) -> CollaborationSession:
    return CollaborationSession.objects.select_related("phone_peer").get(pk=session.pk)


@pytest.mark.slow
def test_killing_the_mb_of_a_call_makes_its_phone_state_unknown_and_the_new_mb_still_reports_hang_ups(
    server, simulated_pair, make_agent
):
    link, processes = simulated_pair
    ann = make_agent("ann", "Sales")

    with monitor_in_thread():
        first = wait_until(lambda: connected_peer(link), timeout=10, message="a Media Blender connected")
        old, new = processes[first.name], processes[({"mb-1", "mb-2"} - {first.name}).pop()]
        wait_until(lambda: "ann" in mb_agents(old), timeout=5, message="ann registered")

        through_old = request()
        wait_until(lambda: fresh(through_old).state == SessionState.ACTIVE, timeout=5, message="confirmed")
        recorded = fresh(through_old)
        old_epoch = Link.objects.get(pk=link.pk).epoch
        assert (recorded.phone_leg, recorded.phone_peer.name, recorded.phone_epoch) == (
            PhoneLeg.CONNECTED,
            first.name,
            old_epoch,
        )

        old.kill()

        unknown = wait_until(
            lambda: (s := fresh(through_old)).phone_leg == PhoneLeg.UNKNOWN and s,
            timeout=5,
            message="phone state unknown after the switch",
        )
        # The switchover that moved the link away from the old MB: the one at the next epoch.
        # (Not the link's last one: when the standby was not yet up, the link went down first
        # and a restore onto it followed within milliseconds.)
        switched_at = FailoverEvent.objects.get(link=link, epoch=old_epoch + 1).completed_at
        assert unknown.state == SessionState.ACTIVE  # the web session goes on
        assert unknown.phone_unknown_at == switched_at
        assert unknown.phone_note.startswith(
            f"The phone leg went through Media Blender routing-a/{first.name}, which was switched away from at "
            f"{switched_at:%H:%M:%S} UTC"
        )
        audit = AuditEntry.objects.get(object_id=str(through_old.pk), action=AuditAction.SESSION_PHONE_UNKNOWN)
        assert audit.after["phone_leg"] == PhoneLeg.UNKNOWN

        # The agent ends it (the call is over); its slot returns at the new MB.
        session_end(session_id=through_old.pk, actor=ann.user, reason=EndReason.AGENT_ENDED)
        wait_until(lambda: mb_agent_state(new, "ann") == "ready", timeout=5, message="ann ready at the new MB")

        through_new = request()
        wait_until(lambda: fresh(through_new).state == SessionState.ACTIVE, timeout=5, message="new MB confirmed")
        assert fresh(through_new).phone_peer.name != first.name
        assert fresh(through_new).phone_epoch == Link.objects.get(pk=link.pk).epoch

        assert new.ctl("hangup", str(through_new.pk)).returncode == 0
        hung_up = wait_until(
            lambda: (s := fresh(through_new)).phone_leg == PhoneLeg.HUNG_UP and s, timeout=5, message="hang-up"
        )
        assert (hung_up.state, hung_up.phone_note) == (SessionState.ACTIVE, "")


def switched_away(
    server, *, phone_leg: PhoneLeg = PhoneLeg.CONNECTED, agent=None, mark: bool = True
) -> CollaborationSession:
    """An active session whose phone leg mb-1 set up at epoch 1, then a manual switchover to
    mb-2 (the services alone, no processes: what follows the commit is not the point)."""
    mb1 = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY, name="mb-1")
    mb2 = PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY, name="mb-2")
    Peer.objects.filter(pk=mb2.pk).update(health=Health.UP)
    peer_mark_connected(mb1, epoch=1)
    agent = agent or AgentFactory(server=server)
    now = timezone.now()
    session = CollaborationSession.objects.create(
        server=server,
        agent=agent,
        any_skill_group=True,
        caller_name="Grace Hopper",
        state=SessionState.ACTIVE,
        queued_at=now,
        routed_at=now,
        activated_at=now,
        route_epoch=1,
        phone_leg=phone_leg,
        phone_peer=mb1,
        phone_epoch=1,
    )
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    link_switchover(link_id=link.pk, actor="system:test", reason="maintenance of mb-1", to_peer_id=mb2.pk)
    if mark:
        # What the task sent on the switchover's commit does (nothing commits in these tests).
        assert sessions_mark_phone_untracked(link_id=link.pk) == (1 if phone_leg == PhoneLeg.CONNECTED else 0)
    return session


@pytest.mark.django_db
def test_with_the_policy_on_an_untracked_session_ends_as_phone_untracked_after_the_grace(server):
    session = switched_away(server)
    since = fresh(session).phone_unknown_at
    assert fresh(session).phone_leg == PhoneLeg.UNKNOWN

    # Off by default, as the original design: the agent ends it.
    assert Policy.current().phone_untracked_grace_seconds is None
    assert sessions_end_phone_untracked_after_grace(now=since + timedelta(days=2)) == 0

    policy_update(actor="system:test", reason="end forgotten calls", changes={"phone_untracked_grace_seconds": 120})
    assert sessions_end_phone_untracked_after_grace(now=since + timedelta(seconds=119)) == 0
    assert fresh(session).state == SessionState.ACTIVE
    assert sessions_end_phone_untracked_after_grace(now=since + timedelta(seconds=121)) == 1
    ended = fresh(session)
    assert (ended.state, ended.end_reason) == (SessionState.ENDED, EndReason.PHONE_UNTRACKED)
    assert sessions_end_phone_untracked_after_grace(now=since + timedelta(seconds=200)) == 0


@pytest.mark.django_db
def test_a_hung_up_phone_leg_stays_hung_up_through_a_switchover(server):
    session = switched_away(server, phone_leg=PhoneLeg.HUNG_UP)

    assert (fresh(session).phone_leg, fresh(session).phone_note) == (PhoneLeg.HUNG_UP, "")


@pytest.mark.django_db
def test_the_grace_is_validated(db):
    for bad in (0, 59, 86_401):
        with pytest.raises(ValidationError) as refused:
            policy_update(actor="system:test", reason="try", changes={"phone_untracked_grace_seconds": bad})
        assert "phone_untracked_grace_seconds" in refused.value.message_dict
    assert Policy.current().phone_untracked_grace_seconds is None


@pytest.fixture
def node_for(server, tmp_path, settings):
    """A real web node for routing-a, without a monitor of its own (the test runs one)."""
    from tests.desktop.test_agent_browser import wait_for_http
    from tests.processes import free_port, start_node

    # The node checks passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    port = free_port()
    log = tmp_path / "node.log"
    process = start_node("routing-a", port, log, COLLABADMIN_RUN_MONITOR="0")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.browser
def test_the_agent_sees_phone_state_unknown_after_the_mb_is_killed_and_ends_the_session_on_the_page(
    server, simulated_pair, make_agent, node_for, monkeypatch
):
    from playwright.sync_api import expect, sync_playwright

    from tests.desktop.test_agent_browser import CHROMIUM, LIVE_TIMEOUT_MS
    from tests.factories import PASSWORD

    link, processes = simulated_pair
    ann = make_agent("ann", "Sales")
    ann.user.set_password(PASSWORD)
    ann.user.save(update_fields=["password"])

    with monitor_in_thread():
        first = wait_until(lambda: connected_peer(link), timeout=10, message="a Media Blender connected")
        old = processes[first.name]
        wait_until(lambda: "ann" in mb_agents(old), timeout=5, message="ann registered")
        session = request()
        wait_until(lambda: fresh(session).state == SessionState.ACTIVE, timeout=5, message="confirmed by the MB")

        # Playwright's sync API keeps an event loop in this thread; the ORM calls after it
        # starts are plain sequential test code.
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
            )
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                page.goto(f"{node_for}/agent/")
                page.get_by_label("Username").fill("ann")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Log in").click()
                row = page.locator(f"#session-{session.pk}")
                expect(row).to_contain_text("Phone connected")
                expect(page.locator("[data-live-status]")).to_have_attribute(
                    "data-state", "live", timeout=LIVE_TIMEOUT_MS
                )

                old.kill()

                expect(row).to_contain_text("Phone state unknown", timeout=LIVE_TIMEOUT_MS)
                expect(row).to_contain_text(f"The phone leg went through Media Blender routing-a/{first.name}")
                expect(row).to_contain_text("When the call is over, end the web session.")
                expect(page.locator("#live-announcer")).to_contain_text(
                    "The phone state of the session with Ada Lovelace is unknown"
                )
                expect(page.get_by_text("1 with phone state unknown")).to_be_visible()

                page.get_by_role("button", name="End the session with Ada Lovelace").click()

                expect(page.get_by_text("The session with Ada Lovelace has ended.")).to_be_visible()
                expect(page.locator(f"#session-{session.pk}")).to_have_count(0)
            finally:
                browser.close()

    ended = fresh(session)
    assert (ended.state, ended.end_reason, ended.ended_by) == (SessionState.ENDED, EndReason.AGENT_ENDED, ann.user)
    assert ended.phone_leg == PhoneLeg.UNKNOWN  # what it was when it ended, for the history


@pytest.mark.django_db
def test_the_administrator_sees_the_unknown_phone_state_and_why_on_the_sessions_page_and_api(
    server, admin_client, admin_api
):
    session = switched_away(server)
    note = fresh(session).phone_note
    assert note.startswith("The phone leg went through Media Blender routing-a/mb-1, which was switched away from at")

    html = admin_client.get("/console/sessions/").content.decode()
    assert "Phone state unknown" in html
    assert note in html

    body = admin_api.get(f"/api/v1/sessions/{session.pk}/").json()
    assert (body["phone_leg"], body["phone_note"], body["phone_epoch"]) == ("unknown", note, 1)
    assert body["phone_unknown_at"] is not None


@pytest.mark.django_db
def test_the_policy_api_takes_the_grace_and_refuses_a_bad_one(admin_api):
    refused = admin_api.patch(
        "/api/v1/policy/", {"reason": "too fast", "phone_untracked_grace_seconds": 5}, format="json"
    )
    assert refused.status_code == 400
    assert "Must be at least 60 s" in str(refused.json())
    assert Policy.current().phone_untracked_grace_seconds is None

    taken = admin_api.patch(
        "/api/v1/policy/", {"reason": "end forgotten calls", "phone_untracked_grace_seconds": 600}, format="json"
    )
    assert taken.status_code == 200, taken.content
    assert Policy.current().phone_untracked_grace_seconds == 600


@pytest.mark.django_db
def test_the_agents_desktop_and_session_page_ask_to_end_the_session_when_the_call_is_over(server, agent, agent_client):
    session = switched_away(server, agent=agent)
    note = fresh(session).phone_note

    for url in ("/agent/", f"/agent/sessions/{session.pk}/"):
        html = agent_client.get(url).content.decode()
        assert "Phone state unknown" in html
        assert f"{note} When the call is over, end the web session." in html
    assert "1</span> with phone state unknown" in agent_client.get("/agent/").content.decode()


@pytest.mark.django_db
def test_the_sweep_marks_the_sessions_whose_marking_message_was_lost_and_ends_them_under_the_policy(server):
    # Nothing commits in this test, so the task sent on the switchover's commit is never
    # sent: as if the message had been lost.
    session = switched_away(server, mark=False)
    assert fresh(session).phone_leg == PhoneLeg.CONNECTED

    phone_untracked_sweep.apply()

    assert fresh(session).phone_leg == PhoneLeg.UNKNOWN
    assert AuditEntry.objects.filter(object_id=str(session.pk), action=AuditAction.SESSION_PHONE_UNKNOWN).count() == 1
    phone_untracked_sweep.apply()  # idempotent: nothing more to mark, the policy is off
    assert AuditEntry.objects.filter(object_id=str(session.pk), action=AuditAction.SESSION_PHONE_UNKNOWN).count() == 1
    assert fresh(session).state == SessionState.ACTIVE


@pytest.mark.slow
def test_after_a_manual_switchover_the_old_mb_still_alive_reports_the_hang_up_of_its_call(
    server, simulated_pair, make_agent
):
    link, processes = simulated_pair
    make_agent("ann", "Sales")

    with monitor_in_thread():
        first = wait_until(lambda: connected_peer(link), timeout=10, message="a Media Blender connected")
        old = processes[first.name]
        wait_until(lambda: "ann" in mb_agents(old), timeout=5, message="ann registered")
        session = request()
        wait_until(lambda: fresh(session).state == SessionState.ACTIVE, timeout=5, message="confirmed")
        other = link.peers().exclude(pk=first.pk).get()
        wait_until(lambda: Peer.objects.get(pk=other.pk).health == Health.UP, timeout=10, message="standby up")

        link_switchover(link_id=link.pk, actor="system:test", reason="upgrade the MB", to_peer_id=other.pk)

        wait_until(lambda: fresh(session).phone_leg == PhoneLeg.UNKNOWN, timeout=5, message="phone state unknown")
        # The old MB, now the standby, still bridges the call and reports its end.
        assert old.ctl("hangup", str(session.pk)).returncode == 0
        hung_up = wait_until(
            lambda: (s := fresh(session)).phone_leg == PhoneLeg.HUNG_UP and s, timeout=5, message="hang-up"
        )
        assert hung_up.state == SessionState.ACTIVE
        assert hung_up.phone_hung_up_at is not None
