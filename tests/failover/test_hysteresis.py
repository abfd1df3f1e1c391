"""Rise/fall hysteresis and flap damping decide health from probe results."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from failover.choices import Health
from failover.monitor.hysteresis import HealthTracker


def tracker(**overrides) -> HealthTracker:
    return HealthTracker(**{"rise": 2, "fall": 3, "flap_window": 60.0, "flap_max": 4, **overrides})


def test_a_peer_goes_down_only_after_fall_consecutive_failures():
    t = tracker(health=Health.UP)

    assert t.observe(False, 1.0) is None
    assert t.observe(False, 2.0) is None
    assert t.observe(False, 3.0) == Health.DOWN
    assert t.failing_since == 1.0


def test_one_good_probe_resets_the_failure_count():
    t = tracker(health=Health.UP)
    t.observe(False, 1.0)
    t.observe(False, 2.0)
    t.observe(True, 3.0)

    assert t.observe(False, 4.0) is None
    assert t.health == Health.UP


def test_a_hard_failure_is_believed_at_once():
    t = tracker(health=Health.UP)

    assert t.observe(False, 1.0, hard=True) == Health.DOWN


def test_a_peer_comes_up_after_rise_consecutive_good_probes():
    t = tracker()

    assert t.observe(True, 1.0) is None
    assert t.observe(True, 2.0) == Health.UP
    assert t.observe(True, 3.0) is None


def test_a_flapping_peer_is_held_down_until_good_for_a_whole_window():
    t = tracker(rise=1, fall=1, flap_window=10.0, flap_max=4)
    now = 0.0
    for _ in range(2):  # up, down, up, down: four changes
        t.observe(True, now)
        now += 1
        t.observe(False, now)
        now += 1

    assert t.is_flapping(now)
    assert t.observe(True, now) is None
    assert t.observe(True, now + 5) is None
    assert t.health == Health.DOWN
    assert t.observe(True, now + 10) == Health.UP


@given(st.lists(st.tuples(st.booleans(), st.booleans()), max_size=60))
def test_health_never_changes_without_enough_consecutive_evidence(probes):
    t = tracker(rise=3, fall=2, flap_max=1000)
    streak_ok = streak_fail = 0
    for index, (ok, hard) in enumerate(probes):
        hard = hard and not ok
        changed = t.observe(ok, float(index), hard=hard)
        streak_ok = streak_ok + 1 if ok else 0
        streak_fail = streak_fail + 1 if not ok else 0
        if changed == Health.UP:
            assert streak_ok >= 3
        if changed == Health.DOWN:
            assert hard or streak_fail >= 2


def test_something_never_seen_up_is_declared_down_only_after_the_grace():
    t = tracker(fall=2, unknown_grace=30.0)

    assert t.observe(False, 0.0, hard=True) is None
    assert t.observe(False, 10.0, hard=True) is None
    assert t.observe(False, 30.0, hard=True) == Health.DOWN


def test_a_node_that_comes_up_within_the_grace_is_simply_up_and_then_fails_normally():
    t = tracker(rise=1, fall=2, unknown_grace=30.0)
    t.observe(False, 0.0, hard=True)

    assert t.observe(True, 5.0) == Health.UP
    assert t.observe(False, 6.0, hard=True) == Health.DOWN
