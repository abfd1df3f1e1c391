"""Notifications reach people (issue 19, point 3): real processes end to end.

The workers run as production runs them: an ordinary one (prefork, 2 processes) and the
notifier (``--notifier``: the notification queue alone, 20 threads). The notifier sends the
deliveries to a real HTTP receiver process (``tests/webhook_receiver.py``, which checks the
HMAC signature) and a real SMTP server process (aiosmtpd, writing a Maildir). Retries are
made fast for the test (0.5 s doubling to 2 s) through the workers' environment.
"""

from __future__ import annotations

import json
import mailbox
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from email.header import decode_header, make_header
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from common.actors import MONITOR
from common.redis_client import shared_redis
from failover.choices import AlertKind, AlertSeverity, NotificationEvent, NotificationKind
from failover.models import NotificationChannel, NotificationDelivery
from failover.services.alert_actions import server_silence_start
from failover.services.alerts import alert_clear, alert_raise
from failover.services.notifications import notifications_resend_lost
from tests.factories import ServerFactory, StaffFactory
from tests.processes import ROOT, child_database_url, free_port, project_env, redis_env, stop_process
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SECRET = "test-secret-of-the-receiver"


SLOW_SECONDS = 4.0  # a slow receiver's answer


def wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    def listening() -> bool:
        assert process.poll() is None, f"{what} exited ({process.returncode})"
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    wait_until(listening, timeout=15, message=f"{what} listening on {port}")


class Receiver:
    """The webhook receiver process on one port: started, killed, started again."""

    def __init__(self, tmp_path: Path, name: str, delay: float = 0.0) -> None:
        self.port, self.delay = free_port(), delay
        self.out = tmp_path / f"{name}.jsonl"
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = [sys.executable, "tests/webhook_receiver.py", "--port", str(self.port), "--secret", SECRET]
        argv += ["--out", str(self.out), "--delay", str(self.delay)]
        self.process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
        wait_for_port(self.port, self.process, "the webhook receiver")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def received(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]


@pytest.fixture
def receivers(tmp_path) -> Iterator[callable]:
    made: list[Receiver] = []

    def make(name: str, delay: float = 0.0) -> Receiver:
        made.append(Receiver(tmp_path, name, delay))
        return made[-1]

    yield make
    for receiver in made:
        receiver.kill()


@pytest.fixture
def smtp_server(tmp_path) -> Iterator[tuple[int, Path]]:
    """aiosmtpd as its own process, every message received written to a Maildir."""
    port, maildir = free_port(), tmp_path / "maildir"
    argv = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}"]
    argv += ["-c", "aiosmtpd.handlers.Mailbox", str(maildir)]
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process, "aiosmtpd")
    yield port, maildir
    stop_process(process)


def start_worker(log: Path, env: dict[str, str], *options: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "celery", "-A", "collabadmin", "worker", *options]
    argv += ["--loglevel", "INFO", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    with open(log, "ab") as out:
        return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop_worker(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def worker(tmp_path, smtp_server) -> Iterator[Path]:
    """The ordinary worker and the notifier, as the stack and the systemd units start them
    (the notification queue comes from the settings, as in production), on this run's
    database and Redis, with fast retries. Yields the notifier's log; the ordinary
    worker's is ``worker.log`` beside it."""
    queues = (settings.CELERY_TASK_DEFAULT_QUEUE, settings.NOTIFY_QUEUE)
    assert settings.NOTIFY_QUEUE  # the default: a queue of their own
    assert settings.NOTIFY_QUEUE != settings.CELERY_TASK_DEFAULT_QUEUE
    redis = shared_redis()
    redis.delete(*queues)  # nothing left from another test
    env = project_env(
        DATABASE_URL=child_database_url(),
        **redis_env(),
        NOTIFY_RETRY_BASE_SECONDS="0.5",
        NOTIFY_RETRY_MAX_SECONDS="2",
        NOTIFY_HTTP_TIMEOUT_SECONDS="10",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_server[0]),
    )
    pid = os.getpid()
    ordinary, notifier = tmp_path / "worker.log", tmp_path / "notifier.log"
    processes = [
        start_worker(ordinary, env, "--pool", "prefork", "--concurrency", "2", "--hostname", f"worker-{pid}@%h"),
        start_worker(
            notifier, env, "--notifier", "--pool", "threads", "--concurrency", "20", "--hostname", f"notifier-{pid}@%h"
        ),
    ]
    yield notifier
    for process in processes:
        stop_worker(process)
    redis.delete(*queues)


def webhook_channel(name: str, url: str, **fields) -> NotificationChannel:
    return NotificationChannel.objects.create(
        name=name, kind=NotificationKind.WEBHOOK, url=url, secret=SECRET, min_severity=AlertSeverity.WARNING, **fields
    )


def mails(maildir: Path) -> list:
    if not (maildir / "new").exists():
        return []
    return list(mailbox.Maildir(maildir, create=False))


def subject(message) -> str:
    return str(make_header(decode_header(message["Subject"])))


def test_a_receiver_down_for_a_while_gets_every_notification_once_back_and_email_is_not_held_up(
    receivers, smtp_server, worker
):
    _, maildir = smtp_server
    receiver = receivers("down-then-up")
    hook = webhook_channel("ops webhook", receiver.url)
    NotificationChannel.objects.create(name="ops mail", kind=NotificationKind.EMAIL, email_to="ops@example.com")
    webhook_channel("info only", receiver.url, enabled=False)  # disabled: sends nothing
    routing_a, routing_b = ServerFactory(name="routing-a"), ServerFactory(name="routing-b")
    server_silence_start(server_id=routing_b.pk, minutes=30, actor=StaffFactory(), reason="planned upgrade")

    # While the receiver is down: three alerts raised, one of them cleared, one silenced.
    for kind in (AlertKind.SERVER_FAILED, AlertKind.CONFIG_OUT_OF_SYNC, AlertKind.SERVER_DEGRADED):
        alert_raise(
            server=routing_a, kind=kind, message=f"{kind} on routing-a", severity=AlertSeverity.CRITICAL, actor=MONITOR
        )
    alert_clear(server=routing_a, kind=AlertKind.SERVER_DEGRADED, actor=MONITOR, reason="fast again")
    silenced = alert_raise(
        server=routing_b,
        kind=AlertKind.SERVER_FAILED,
        message="routing-b failed",
        severity=AlertSeverity.CRITICAL,
        actor=MONITOR,
    )
    assert not NotificationDelivery.objects.filter(alert=silenced).exists()

    # E-mail arrives at the SMTP process at once: the dead receiver holds nothing up.
    wait_until(
        lambda: len(mails(maildir)) == 4,
        timeout=30,
        message="4 e-mails",
        diagnostics=lambda: worker.read_text()[-3000:],
    )
    subjects = sorted(subject(message) for message in mails(maildir))
    assert sum("RESOLVED" in s for s in subjects) == 1
    assert all("routing-a" in s for s in subjects)
    assert all(message["To"] == "ops@example.com" for message in mails(maildir))

    # The webhook's deliveries are retried, recorded, not lost.
    hooks = NotificationDelivery.objects.filter(channel=hook)
    wait_until(
        lambda: all(d.attempts >= 3 and d.last_error for d in hooks.all()) and hooks.count() == 4,
        timeout=30,
        message="every webhook delivery tried three times",
    )
    assert not hooks.filter(delivered_at__isnull=False).exists()
    receiver.start()
    wait_until(
        lambda: not hooks.filter(delivered_at__isnull=True).exists(),
        timeout=30,
        message="every webhook delivery delivered once the receiver is back",
        diagnostics=lambda: worker.read_text()[-3000:],
    )
    received = receiver.received()
    assert {r["delivery_id"] for r in received} == {str(d.delivery_id) for d in hooks}
    assert all(r["verified"] for r in received)
    assert all(r["body"]["delivery_id"] == r["delivery_id"] for r in received)
    assert {r["body"]["event"] for r in received} == {NotificationEvent.RAISED, NotificationEvent.CLEARED}
    assert {r["body"]["alert"]["server"] for r in received} == {"routing-a"}
    sample = received[0]["body"]
    assert sample["text"].startswith("[collabadmin]")
    assert sample["alert"]["kind"] in AlertKind.values
    assert NotificationDelivery.objects.exclude(channel__name__in=["ops webhook", "ops mail"]).count() == 0

    # Killed and started again on the same port: what was raised meanwhile arrives too.
    receiver.kill()
    alert_clear(server=routing_a, kind=AlertKind.SERVER_FAILED, actor=MONITOR, reason="back")
    late = NotificationDelivery.objects.get(channel=hook, event=NotificationEvent.CLEARED, alert__kind="server_failed")
    wait_until(lambda: NotificationDelivery.objects.get(pk=late.pk).attempts >= 2, timeout=20, message="retried")
    receiver.start()
    wait_until(
        lambda: NotificationDelivery.objects.get(pk=late.pk).delivered_at is not None, timeout=20, message="delivered"
    )
    assert str(late.delivery_id) in {r["delivery_id"] for r in receiver.received()}
    wait_until(lambda: len(mails(maildir)) == 5, timeout=20, message="the fifth e-mail")


def test_a_slow_receiver_does_not_delay_another_and_a_lost_task_is_sent_again(receivers, worker):
    """Two slow receivers (4 s each) get four deliveries before the fast one's: on an
    ordinary 2-process worker (the default before the notifier) they hold both processes
    and the fast one waits at least 4 s; the notifier's threads send it at once."""
    slows = [receivers(f"slow-{n}", delay=SLOW_SECONDS) for n in range(2)]
    fast = receivers("fast")
    for receiver in [*slows, fast]:
        receiver.start()
    for receiver in slows:
        webhook_channel(receiver.out.stem, receiver.url, alert_kinds=[AlertKind.SERVER_FAILED])
    webhook_channel("fast", fast.url, alert_kinds=[AlertKind.SERVER_DEGRADED])
    for name in ("routing-a", "routing-b"):
        alert_raise(
            server=ServerFactory(name=name),
            kind=AlertKind.SERVER_FAILED,
            message="down",
            severity=AlertSeverity.CRITICAL,
            actor=MONITOR,
        )
    started = time.time()
    alert_raise(
        server=ServerFactory(name="routing-c"),
        kind=AlertKind.SERVER_DEGRADED,
        message="degraded",
        severity=AlertSeverity.WARNING,
        actor=MONITOR,
    )
    wait_until(fast.received, timeout=15, message="the fast receiver's notification")
    for receiver in slows:
        wait_until(lambda r=receiver: len(r.received()) == 2, timeout=20, message=f"{receiver.out.stem}'s two")
    # Ordered by the receivers' own clocks, not against a fixed time (a busy machine once
    # took 3.4 s to send the fast one at once): waiting for a slow delivery means arriving
    # after the first slow one finished (its arrival + its delay).
    first_slow = min(record["received_at"] for receiver in slows for record in receiver.received())
    fast_at = fast.received()[0]["received_at"]
    assert fast_at < first_slow + SLOW_SECONDS, "the fast one waited for a slow one to finish"
    assert fast_at - started < SLOW_SECONDS * 2  # and it was sent, not left for a retry
    # The notifier sent them all; the ordinary worker, running beside it, never saw one.
    ordinary = worker.with_name("worker.log")
    wait_until(lambda: " ready." in ordinary.read_text(), timeout=30, message="the ordinary worker ready")
    assert "failover.notification_send[" in worker.read_text()  # "Task ...[id] received"
    assert "failover.notification_send[" not in ordinary.read_text(), ordinary.read_text()[-3000:]

    # A delivery whose task was lost (Redis restarted): the beat sweep sends it again.
    lost = NotificationDelivery.objects.create(
        channel=NotificationChannel.objects.get(name="fast"),
        event=NotificationEvent.TEST,
        next_attempt_at=timezone.now() - timedelta(minutes=2),
    )
    assert notifications_resend_lost() == 1
    wait_until(
        lambda: NotificationDelivery.objects.get(pk=lost.pk).delivered_at is not None,
        timeout=15,
        message="the lost delivery delivered",
    )
    assert str(lost.delivery_id) in {r["delivery_id"] for r in fast.received()}
