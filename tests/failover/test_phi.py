"""The phi accrual failure detector: suspicion from the history of heartbeat arrivals."""

from __future__ import annotations

import math
import random

import pytest

from failover.monitor.phi import ACCEPTABLE_PAUSE_S, MIN_SPREAD_FRACTION, PhiAccrual


def beating(interval: float, count: int, *, jitter: float = 0.0, seed: int = 1) -> PhiAccrual:
    """A detector fed ``count`` heartbeats ``interval`` apart (give or take ``jitter``)."""
    rng = random.Random(seed)
    detector = PhiAccrual(expected_interval=interval, threshold=8.0)
    now = 0.0
    for _ in range(count):
        now += interval + rng.uniform(-jitter, jitter)
        detector.heartbeat(now)
    return detector


def test_there_is_no_suspicion_before_the_first_heartbeat():
    detector = PhiAccrual(expected_interval=0.1, threshold=8.0)

    assert detector.phi(1000.0) == 0.0


def test_suspicion_grows_with_the_silence_and_reaches_the_threshold_where_it_says():
    detector = beating(0.1, 100)
    last = detector.last_arrival
    after = detector.suspicious_after()

    levels = [detector.phi(last + silence) for silence in (0.05, 0.1, 0.2, after, after + 0.1)]

    assert levels == sorted(levels)
    assert levels[-2] == pytest.approx(8.0, abs=0.01)
    assert levels[-1] > 8.0


def test_regular_heartbeats_are_suspected_at_the_floor_of_the_spread():
    """A quiet machine's heartbeats barely jitter; the floor keeps one scheduler hiccup
    from reading as a stop, and the acceptable pause adds 75 ms: at 100 ms a silence of
    about 400 ms is suspicious, no less (a stalled peer is still replaced within 0.5 s)."""
    detector = beating(0.1, 200)

    mean, spread = detector.mean_and_spread()

    assert spread == pytest.approx(0.1 * MIN_SPREAD_FRACTION)
    assert 0.38 < detector.suspicious_after() < 0.42


def test_a_heartbeat_that_tcp_resent_after_its_retransmission_time_out_is_no_suspicion():
    """Under random packet loss a lost heartbeat that TCP cannot resend at the next one's
    arrival comes one retransmission time-out (200 ms on Linux) after it: 100 + 200 ms
    after the previous one, plus a scheduler's jitter. That is a healthy peer on a lossy
    path, not a stop: 50 ms of jitter on top is still far from the threshold."""
    detector = beating(0.1, 200, jitter=0.005)
    last = detector.last_arrival

    assert ACCEPTABLE_PAUSE_S > 0
    assert detector.phi(last + 0.1 + 0.2 + 0.05) < 6.0


def test_a_peer_whose_heartbeats_jitter_is_given_the_time_its_history_asks_for():
    steady = beating(0.1, 200)
    jittery = beating(0.1, 200, jitter=0.09)

    assert jittery.suspicious_after() > steady.suspicious_after()
    last = jittery.last_arrival
    assert jittery.phi(last + steady.suspicious_after()) < 8.0


def test_old_history_is_forgotten_so_a_calmer_peer_is_judged_by_its_recent_heartbeats():
    detector = beating(0.1, 200, jitter=0.09)
    noisy = detector.suspicious_after()
    now = detector.last_arrival
    for _ in range(250):
        now += 0.1
        detector.heartbeat(now)

    assert detector.suspicious_after() < noisy
    assert detector.suspicious_after() == pytest.approx(beating(0.1, 200).suspicious_after(), abs=1e-3)


def test_a_very_long_silence_is_infinitely_suspicious_rather_than_an_error():
    detector = beating(0.1, 10)

    assert math.isinf(detector.phi(detector.last_arrival + 3600))


def test_with_many_peers_each_is_asked_for_fewer_heartbeats_and_off_stays_off():
    from failover.monitor.monitor import heartbeat_interval_for

    assert heartbeat_interval_for(0.1, 10) == 0.1
    assert heartbeat_interval_for(0.1, 400) == 0.1
    assert heartbeat_interval_for(0.1, 4000) == 1.0
    assert heartbeat_interval_for(2.0, 4000) == 2.0
    assert heartbeat_interval_for(0.0, 4000) == 0.0
