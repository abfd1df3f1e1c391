"""Every loss of redundancy is an alert, with real Media Blender processes and a real
monitor (issue 19, point 1): kill the standby, kill both, bring them back; take the
connected MB's ICM connection away with ``peerctl``; a fresh connection reads the side.
"""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command
from django.test import Client

from failover.choices import AlertKind, AlertSeverity, Health, IcmSide, PeerConnection, PeerKind, PeerPriority
from failover.models import Alert, Lease, Link, Peer, Policy
from failover.monitor.monitor import LEASE_NAME
from failover.monitor.runner import monitor_in_thread
from tests.factories import PeerFactory
from tests.peering.conftest import PeerProcess, start_peer  # noqa: F401  (fixture)
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fast_policy(db) -> Policy:
    # Quick probes, a generous time-out and fall: a busy machine is not a failure.
    policy = Policy.current()
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.rise, policy.fall = 200, 1000, 2, 3
    policy.save()
    return policy


def start_pair(server, start_peer, *, sides=("A", "A")):  # noqa: F811
    processes = {
        name: start_peer("media-blender", "--name", name, "--icm-side", side)
        for name, side in zip(("mb-1", "mb-2"), sides, strict=True)
    }
    for priority, name in ((PeerPriority.PRIMARY, "mb-1"), (PeerPriority.SECONDARY, "mb-2")):
        PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=name, port=processes[name].port)
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER), processes


def open_kinds(link: Link) -> set[str]:
    return set(Alert.objects.filter(link=link, cleared_at__isnull=True).values_list("kind", flat=True))


def settled(link: Link) -> str:
    """Both peers up, one connected and both ICM sides read; returns the connected name."""
    wait_until(
        lambda: (
            link.peers().filter(health=Health.UP, icm_side_reported_at__isnull=False).count() == 2
            and link.peers().filter(connection=PeerConnection.CONNECTED).exists()
        ),
        timeout=15,
        message="both peers up, one connected, both ICM sides read",
    )
    return link.peers().get(connection=PeerConnection.CONNECTED).name


def restart(process: PeerProcess, start_peer, name: str) -> PeerProcess:  # noqa: F811
    return start_peer("media-blender", "--name", name, "--port", str(process.port))


def test_killing_the_standby_then_both_raises_redundancy_lost_then_link_down_and_restarts_clear_them(
    server,
    start_peer,  # noqa: F811
    fast_policy,
):
    link, processes = start_pair(server, start_peer)
    with monitor_in_thread():
        connected = settled(link)
        standby = "mb-2" if connected == "mb-1" else "mb-1"
        assert open_kinds(link) == set()

        processes[standby].kill()
        lost = wait_until(
            lambda: Alert.objects.filter(link=link, kind=AlertKind.REDUNDANCY_LOST, cleared_at__isnull=True).first(),
            timeout=10,
            message="a pair-without-redundancy alert after the standby was killed",
        )
        assert lost.severity == AlertSeverity.WARNING
        assert lost.message == f"Media Blender pair without redundancy: standby {standby} down"
        assert open_kinds(link) == {AlertKind.REDUNDANCY_LOST}

        processes[connected].kill()
        down = wait_until(
            lambda: Alert.objects.filter(link=link, kind=AlertKind.LINK_DOWN, cleared_at__isnull=True).first(),
            timeout=10,
            message="a link-down alert after both were killed",
        )
        assert down.severity == AlertSeverity.CRITICAL
        assert open_kinds(link) == {AlertKind.LINK_DOWN, AlertKind.REDUNDANCY_LOST}
        lost.refresh_from_db()
        assert lost.cleared_at is None, "the same alert stays open while the link is down"
        assert lost.message == "Media Blender pair without redundancy: mb-1 down, mb-2 down"

        processes[standby] = restart(processes[standby], start_peer, standby)
        wait_until(lambda: open_kinds(link) == {AlertKind.REDUNDANCY_LOST}, timeout=10, message="link down cleared")
        down.refresh_from_db()
        assert down.clear_reason == f"{standby} connected"

        processes[connected] = restart(processes[connected], start_peer, connected)
        wait_until(lambda: open_kinds(link) == set(), timeout=10, message="redundancy back: every alert cleared")
        lost.refresh_from_db()
        assert lost.cleared_at is not None


def test_peerctl_taking_the_connected_mbs_icm_away_raises_a_critical_alert_and_giving_it_back_clears_it(
    server,
    start_peer,  # noqa: F811
    fast_policy,
):
    link, processes = start_pair(server, start_peer)
    with monitor_in_thread():
        connected = settled(link)
        port = str(processes[connected].port)

        call_command("peerctl", "--port", port, "set-icm-side", "none")

        alert = wait_until(
            lambda: Alert.objects.filter(link=link, kind=AlertKind.MB_WITHOUT_ICM, cleared_at__isnull=True).first(),
            timeout=10,
            message="a Media-Blender-without-ICM alert",
        )
        assert alert.severity == AlertSeverity.CRITICAL
        assert alert.message == f"Media Blender {connected} reports no ICM connection (side A or B)"

        call_command("peerctl", "--port", port, "set-icm-side", "B")

        wait_until(lambda: open_kinds(link) == set(), timeout=10, message="the ICM alert cleared")
        alert.refresh_from_db()
        assert alert.clear_reason == f"{connected} on ICM side B"
        assert Peer.objects.get(name=connected).icm_side == IcmSide.B


def test_a_fresh_connection_reads_each_mbs_icm_side_and_the_overview_shows_it(
    server,
    start_peer,  # noqa: F811
    fast_policy,
    admin_user,
):
    # mb-1 (the primary, connected first) has no ICM connection from the start: it never
    # changes, so only reading it at connect can tell.
    link, _ = start_pair(server, start_peer, sides=("none", "B"))
    with monitor_in_thread():
        assert settled(link) == "mb-1"
        wait_until(
            lambda: open_kinds(link) == {AlertKind.MB_WITHOUT_ICM},
            timeout=10,
            message="the connected MB without ICM raised from its first connection",
        )

    sides = dict(link.peers().values_list("name", "icm_side"))
    assert sides == {"mb-1": IcmSide.NONE, "mb-2": IcmSide.B}
    client = Client()
    client.force_login(admin_user)
    html = client.get("/").content.decode()
    assert '<span data-icm-side="none">ICM none</span>' in html
    assert '<span data-icm-side="B">ICM side B</span>' in html
    assert "ICM unknown" not in html
    assert "Media Blender mb-1 reports no ICM connection (side A or B)" in html


def test_a_monitor_whose_loop_stalls_reports_it_with_its_lease_for_metrics(server, start_peer, fast_policy):  # noqa: F811
    """``collabadmin_health_monitor_late_seconds`` (the *running late* rule) is the figure the
    acting monitor writes with each lease renewal: stall its event loop and read it back."""
    link, _ = start_pair(server, start_peer)
    with monitor_in_thread() as monitor:
        settled(link)
        loop = next(iter(monitor.peer_watchers.values()))[2].get_loop()

        loop.call_soon_threadsafe(time.sleep, 0.5)  # the monitor's own loop blocked: it runs late

        wait_until(
            lambda: Lease.objects.get(name=LEASE_NAME).holder_late_ms >= 400,
            timeout=10,
            message="the stall reported with a lease renewal",
        )
        body = Client().get("/metrics").content.decode()
        (line,) = [row for row in body.splitlines() if row.startswith("collabadmin_health_monitor_late_seconds ")]
        assert float(line.split()[1]) >= 0.4
