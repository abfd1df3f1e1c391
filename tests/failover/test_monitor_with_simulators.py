"""The monitor against real simulator processes: crashes, stalls and flapping peers.

Each test starts two Media Blender simulators (real processes on real sockets), points a
pair at them, runs the monitor, and then really kills, stops or disturbs a process.
"""

from __future__ import annotations

import signal

import pytest

from failover.choices import FailoverKind, Health, PeerKind, PeerPriority
from failover.models import FailoverEvent, Link, Peer, Policy
from failover.monitor.runner import monitor_in_thread
from tests.factories import PeerFactory
from tests.peering.conftest import start_peer  # noqa: F401  (fixture)
from tests.waiting import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def connected_name(link: Link) -> str | None:
    return link.peers().filter(connection="connected").values_list("name", flat=True).first()


def both_up_and_one_connected(link: Link) -> tuple[str, str]:
    """Wait for start-up to settle; return (connected, standby) names. Which one is
    connected first is whichever answered first: the rule is "first one up"."""
    wait_until(
        lambda: connected_name(link) and link.peers().filter(health=Health.UP).count() == 2,
        timeout=10,
        message="both peers up and one connected",
    )
    active = connected_name(link)
    return active, ({"mb-1", "mb-2"} - {active}).pop()


@pytest.fixture
def fast_policy(db):
    policy = Policy.current()
    # Short interval for fast tests, but a generous time-out and fall: the suite runs on a
    # busy two-core machine, and a slow moment must not look like a failure.
    policy.probe_interval_ms, policy.probe_timeout_ms, policy.rise, policy.fall = 200, 1000, 2, 3
    policy.save()
    return policy


@pytest.fixture
def simulated_pair(server, start_peer, fast_policy):  # noqa: F811
    processes = {
        "mb-1": start_peer("media-blender", "--name", "mb-1"),
        "mb-2": start_peer("media-blender", "--name", "mb-2"),
    }
    for priority, name in enumerate(["mb-1", "mb-2"], start=PeerPriority.PRIMARY):
        PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority, name=name, port=processes[name].port)
    link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
    return link, processes


def test_sigkill_of_the_connected_media_blender_switches_to_the_standby(simulated_pair):
    link, processes = simulated_pair
    with monitor_in_thread():
        active, standby = both_up_and_one_connected(link)

        processes[active].kill()

        wait_until(lambda: connected_name(link) == standby, timeout=5, message="switch to the standby")
    event = FailoverEvent.objects.get(link=link, kind=FailoverKind.AUTOMATIC)
    assert (event.from_peer.name, event.to_peer.name) == (active, standby)
    # The dropped connection is its detection: noticed at once, no time to measure
    # (tests/failover/test_detection_kind.py), unless a probe had failed just before.
    assert event.detected_at_once or event.detection_seconds < 2
    assert Peer.objects.get(name=active).health == Health.DOWN


def test_sigstop_of_the_connected_media_blender_switches_to_the_standby(simulated_pair):
    link, processes = simulated_pair
    with monitor_in_thread():
        active, standby = both_up_and_one_connected(link)

        processes[active].signal(signal.SIGSTOP)
        try:
            wait_until(lambda: connected_name(link) == standby, timeout=10, message="switch to the standby")
        finally:
            processes[active].signal(signal.SIGCONT)
    event = FailoverEvent.objects.get(link=link, kind=FailoverKind.AUTOMATIC)
    # The simulators push heartbeats (default policy): their silence, not a probe time-out.
    assert "heartbeat: silent for" in event.reason


def test_a_killed_standby_that_comes_back_stays_standby(simulated_pair, start_peer):  # noqa: F811
    link, processes = simulated_pair
    with monitor_in_thread():
        active, standby = both_up_and_one_connected(link)
        processes[active].kill()
        wait_until(lambda: connected_name(link) == standby, timeout=5, message="switch to the standby")

        start_peer("media-blender", "--name", active, "--port", str(processes[active].port))
        wait_until(lambda: Peer.objects.get(name=active).health == Health.UP, timeout=10, message="back up")

        assert connected_name(link) == standby


def test_a_flapping_peer_does_not_flap_the_link(simulated_pair, fast_policy):
    link, processes = simulated_pair
    # The flapper is refused (a hard failure, believed at once), so fall and time-out do
    # not matter for it; making them lenient keeps a slow moment of the busy test machine
    # from failing the healthy standby and muddling what this test is about.
    fast_policy.probe_timeout_ms, fast_policy.fall = 2000, 6
    fast_policy.save()
    with monitor_in_thread() as monitor:
        active, standby = both_up_and_one_connected(link)
        flapper = processes[active]
        flapper_id = Peer.objects.get(name=active).pk

        def answered_twice() -> bool:
            _, watcher, _ = monitor.peer_watchers[flapper_id]
            return watcher.tracker.successes >= 2

        for round_ in range(6):
            refused = flapper.ctl("fault", "refuse", via_control=True)
            assert refused.returncode == 0, refused.stderr
            wait_until(
                lambda: Peer.objects.get(name=active).health == Health.DOWN,
                timeout=10,
                message=f"round {round_}: the refusing peer seen down",
            )
            cleared = flapper.ctl("fault", "clear", via_control=True)
            assert cleared.returncode == 0, cleared.stderr
            wait_until(answered_twice, timeout=10, message=f"round {round_}: answering again before the next refusal")

    events = list(FailoverEvent.objects.filter(link=link).values_list("kind", "reason"))
    assert [kind for kind, _ in events].count(FailoverKind.AUTOMATIC) == 1, events
    assert connected_name(link) == standby, events


def test_a_decision_the_database_missed_is_written_again(simulated_pair):
    link, processes = simulated_pair
    with monitor_in_thread():
        active, standby = both_up_and_one_connected(link)
        processes[standby].kill()
        wait_until(lambda: Peer.objects.get(name=standby).health == Health.DOWN, timeout=5, message="standby down")

        # The write of that decision is lost (here: overwritten behind the monitor's back).
        # The monitor sees the database disagree with its probes and writes it again.
        Peer.objects.filter(name=standby).update(health=Health.UP)

        wait_until(
            lambda: Peer.objects.get(name=standby).health == Health.DOWN, timeout=10, message="standby down again"
        )
    assert connected_name(link) == active
