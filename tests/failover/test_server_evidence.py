"""Busy is not dead: a server is failed only on evidence that its node is gone.

The decision logic alone (failover/monitor/server_evidence.py), fed probe outcomes and
heartbeat readings at chosen times. The real processes (a saturated node, a stopped one,
a killed one) are in test_server_busy_not_dead.py.
"""

from __future__ import annotations

from failover.choices import Health
from failover.monitor.hysteresis import HealthTracker
from failover.monitor.server_evidence import (
    BEAT_READING_FRESH_SECONDS,
    DEGRADED_CLEAR_SECONDS,
    DEGRADED_HTTP_WAIT_SECONDS,
    NodeBeat,
    Outcome,
    ServerRules,
    ServerTracker,
)

RULES = ServerRules(silence=3.0, unresponsive=30.0)


def up_server() -> ServerTracker:
    tracker = HealthTracker(rise=2, fall=1, flap_window=60.0, flap_max=4, health=Health.UP, unknown_grace=30.0)
    return ServerTracker(tracker, RULES)


def beat(age: float, read_at: float, http_wait: float = 0.0) -> NodeBeat:
    return NodeBeat(age=age, read_at=read_at, http_wait=http_wait)


def time_outs(server: ServerTracker, times, beat_at=lambda now: beat(0.2, now)):
    """Probe time-outs at each of ``times``, each with the heartbeat reading ``beat_at(now)``."""
    return [server.probe(Outcome.TIMEOUT, now, beat_at(now), "timeout") for now in times]


def test_a_refused_connection_fails_a_server_at_once_whatever_its_heartbeat_says():
    server = up_server()

    verdict = server.probe(Outcome.REFUSED, 100.0, beat(0.1, 100.0), "connection refused")

    assert verdict.health == Health.DOWN
    assert verdict.failed_at == 100.0
    assert "refused" in verdict.reason


def test_a_reset_connection_fails_a_server_at_once():
    assert up_server().probe(Outcome.RESET, 5.0, None, "connection reset").health == Health.DOWN


def test_time_outs_with_a_fresh_heartbeat_never_fail_a_server_however_long_they_last():
    server = up_server()

    verdicts = time_outs(server, [float(t) for t in range(0, 600)])

    assert all(v.health is None for v in verdicts)
    assert server.health == Health.UP
    # ...but the server is degraded from the second time-out on, once.
    assert [v.degraded for v in verdicts if v.degraded is not None] == [True]
    assert verdicts[1].degraded is True


def test_one_late_answer_is_not_even_degraded():
    server = up_server()

    verdicts = [server.probe(Outcome.TIMEOUT, 1.0, beat(0.2, 1.0)), server.probe(Outcome.OK, 2.0, beat(0.2, 2.0))]

    assert all(v.health is None and v.degraded is None for v in verdicts)


def test_time_outs_and_a_silent_heartbeat_fail_the_server_once_the_silence_is_long_enough():
    """SIGSTOP: the node's beats stop at t=10 and its /healthz stops answering."""
    server = up_server()

    def stopped_at_10(now: float) -> NodeBeat:
        return beat(max(0.0, now - 10.0), now)

    early = time_outs(server, [11.0, 12.0, 12.9], stopped_at_10)
    assert all(v.health is None for v in early)
    [late] = time_outs(server, [13.0], stopped_at_10)

    assert late.health == Health.DOWN
    assert late.failed_at == 10.0  # its last beat: when it went away
    assert "no heartbeat for 3.0 s" in late.reason


def test_with_no_heartbeat_the_failure_began_when_the_first_unanswered_probe_went_out():
    server = up_server()
    server.probe(Outcome.TIMEOUT, 2.0, None, "timeout", sent_at=1.0)
    server.probe(Outcome.TIMEOUT, 3.0, None, "timeout", sent_at=2.05)

    [last] = time_outs(server, [31.0], lambda now: None)

    assert last.health == Health.DOWN
    assert last.failed_at == 1.0


def test_a_new_heartbeat_reading_alone_fails_a_stopped_node_between_probes():
    server = up_server()
    time_outs(server, [11.0, 12.0], lambda now: beat(now - 10.0, now))

    assert server.reconsider(12.5, beat(2.5, 12.5)).health is None
    assert server.reconsider(13.0, beat(3.0, 13.0)).health == Health.DOWN


def test_a_silent_heartbeat_alone_fails_nothing_while_healthz_answers():
    """The node cannot reach the database (so it cannot beat) but is alive and answering."""
    server = up_server()

    verdicts = [server.probe(Outcome.OK, float(t), beat(60.0 + t, float(t))) for t in range(100)]
    verdicts.append(server.reconsider(100.0, beat(160.0, 100.0)))

    assert all(v.health is None for v in verdicts)


def test_a_stale_reading_of_the_heartbeats_proves_nothing():
    """The monitor's own reads stopped (its database is away): an old reading that said
    "silent" must not fail a server later on."""
    server = up_server()
    old = beat(age=5.0, read_at=0.0)

    verdicts = time_outs(server, [BEAT_READING_FRESH_SECONDS + 1.0 + t for t in range(5)], lambda now: old)

    assert all(v.health is None for v in verdicts)


def test_without_any_heartbeat_only_a_long_silence_of_healthz_fails_the_server():
    server = up_server()

    verdicts = time_outs(server, [float(t) for t in range(0, 30)], lambda now: None)
    assert all(v.health is None for v in verdicts)
    [last] = time_outs(server, [30.0], lambda now: None)

    assert last.health == Health.DOWN
    assert "no heartbeat to read" in last.reason


def test_a_node_that_keeps_requests_waiting_is_degraded_and_recovers_after_a_quiet_spell():
    server = up_server()
    busy = beat(0.3, 1.0, http_wait=DEGRADED_HTTP_WAIT_SECONDS + 0.5)

    assert server.probe(Outcome.OK, 1.0, busy).degraded is True
    assert server.reconsider(2.0, beat(0.3, 2.0, http_wait=DEGRADED_HTTP_WAIT_SECONDS + 1)).degraded is None
    quiet = [server.reconsider(2.0 + t, beat(0.3, 2.0 + t)) for t in range(1, int(DEGRADED_CLEAR_SECONDS))]
    assert all(v.degraded is None for v in quiet)
    cleared = server.reconsider(2.0 + DEGRADED_CLEAR_SECONDS, beat(0.3, 2.0 + DEGRADED_CLEAR_SECONDS))

    assert cleared.degraded is False
    assert server.health == Health.UP


def test_a_failed_server_is_no_longer_degraded_and_comes_back_after_rise_answers():
    server = up_server()
    time_outs(server, [1.0, 2.0])
    assert server.degraded

    assert server.probe(Outcome.REFUSED, 3.0, beat(0.5, 3.0)).health == Health.DOWN
    assert not server.degraded
    assert server.probe(Outcome.OK, 4.0, beat(0.1, 4.0)).health is None
    assert server.probe(Outcome.OK, 5.0, beat(0.1, 5.0)).health == Health.UP


def test_a_late_answer_breaks_the_run_of_answers_a_failed_server_needs_to_come_back():
    server = up_server()
    server.probe(Outcome.REFUSED, 1.0, None)
    server.probe(Outcome.OK, 2.0, beat(0.1, 2.0))

    server.probe(Outcome.TIMEOUT, 3.0, beat(0.1, 3.0))
    assert server.probe(Outcome.OK, 4.0, beat(0.1, 4.0)).health is None
    assert server.probe(Outcome.OK, 5.0, beat(0.1, 5.0)).health == Health.UP


def test_a_node_still_starting_is_not_failed_within_the_start_up_grace():
    tracker = HealthTracker(rise=2, fall=1, flap_window=60.0, flap_max=4, health=Health.UNKNOWN, unknown_grace=30.0)
    server = ServerTracker(tracker, RULES)

    refused = [server.probe(Outcome.REFUSED, float(t), None) for t in range(30)]
    assert all(v.health is None for v in refused)

    assert server.probe(Outcome.REFUSED, 30.0, None).health == Health.DOWN


def test_time_outs_set_aside_for_a_late_monitor_count_for_nothing():
    server = up_server()

    verdicts = [server.probe(Outcome.SET_ASIDE, float(t), None) for t in range(100)]

    assert all(v.health is None and v.degraded is None for v in verdicts)
