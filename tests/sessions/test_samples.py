"""Session samples, the history behind the overview's queue / active-sessions chart: the beat
task records the counts of the whole installation every 10 s and forgets them after a day."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions.choices import EndReason, SessionState
from sessions.models import SessionSample
from sessions.services.samples import SAMPLE_RETENTION, sample_record, samples_prune
from sessions.tasks import record_sample
from tests.factories import AgentFactory, ServerFactory, SessionFactory

pytestmark = pytest.mark.django_db


def sessions_in_states(server, queued: int, in_transit: int, active: int, ended: int) -> None:
    agent = AgentFactory(server=server)
    now = timezone.now()
    for _ in range(queued):
        SessionFactory(server=server)
    for _ in range(in_transit):
        SessionFactory(server=server, state=SessionState.IN_TRANSIT, agent=agent, routed_at=now)
    for _ in range(active):
        SessionFactory(server=server, state=SessionState.ACTIVE, agent=agent, routed_at=now, activated_at=now)
    for _ in range(ended):
        SessionFactory(server=server, state=SessionState.ENDED, end_reason=EndReason.AGENT_ENDED, ended_at=now)


def test_the_beat_records_a_sample_every_10_seconds_and_each_run_expires_before_the_next():
    schedule = {entry["task"]: entry for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    entry = schedule["sessions.record_sample"]

    assert entry["schedule"] == 10.0
    assert 0 < entry["options"]["expires"] < entry["schedule"]


def test_the_task_records_the_counts_of_every_server(server):
    sessions_in_states(server, queued=3, in_transit=1, active=2, ended=4)
    sessions_in_states(ServerFactory(name="routing-b"), queued=1, in_transit=0, active=1, ended=1)

    record_sample.apply().get()

    sample = SessionSample.objects.get()
    assert (sample.queued, sample.in_transit, sample.active) == (4, 1, 3)
    assert timezone.now() - sample.at < timedelta(seconds=5)


def test_an_empty_installation_is_sampled_as_zeros(db):
    sample = sample_record()

    assert (sample.queued, sample.in_transit, sample.active) == (0, 0, 0)


def test_samples_older_than_a_day_are_pruned_when_the_next_is_recorded(db):
    now = timezone.now()
    old = SessionSample.objects.create(at=now - SAMPLE_RETENTION - timedelta(seconds=1), queued=9)
    kept = SessionSample.objects.create(at=now - SAMPLE_RETENTION + timedelta(minutes=1), queued=5)

    new = sample_record(now=now)

    assert set(SessionSample.objects.values_list("pk", flat=True)) == {kept.pk, new.pk}
    assert not SessionSample.objects.filter(pk=old.pk).exists()


def test_pruning_alone_says_how_many_it_removed(db):
    now = timezone.now()
    for hours in (25, 30, 48):
        SessionSample.objects.create(at=now - timedelta(hours=hours))
    SessionSample.objects.create(at=now - timedelta(hours=1))

    assert samples_prune(now=now) == 3
    assert SessionSample.objects.count() == 1


def statements(captured: CaptureQueriesContext) -> list[str]:
    """The SQL statements run, without the savepoints of the test's own transaction."""
    return [q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


def test_recording_takes_the_same_queries_for_few_or_many_sessions(server):
    sessions_in_states(server, queued=1, in_transit=0, active=0, ended=0)
    with CaptureQueriesContext(connection) as few:
        sample_record()

    sessions_in_states(server, queued=20, in_transit=5, active=10, ended=30)
    with CaptureQueriesContext(connection) as many:
        sample = sample_record()

    assert (sample.queued, sample.in_transit, sample.active) == (21, 5, 10)
    # previous sample, counts (one aggregate), insert, prune
    assert len(statements(few)) == len(statements(many)) == 4
