"""The failover policy: one row of tunables, edited in the Django admin."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

# The least a server probe may wait for /healthz. /healthz is answered on the node's event
# loop, ahead of its HTTP work (collabadmin/probes.py), yet a node flooded with ten times
# the requests its threads can serve answered it in up to 640 ms (p99 300 ms) on a busy
# two-core machine (bench/saturated_node.py, docs/performance.md): a shorter time-out
# would read a busy node's answer as none.
SERVER_PROBE_TIMEOUT_FLOOR_MS = 1000
# Each node writes its heartbeat every second (failover/monitor/node_heartbeat.py): a
# silence shorter than two beats would read one late write as a dead node.
SERVER_SILENCE_FLOOR_SECONDS = 2
# Without a heartbeat to go by, /healthz must stay unanswered this long: longer than a
# saturated node can keep a request waiting (a garbage collection, a CPU-starved moment).
SERVER_UNRESPONSIVE_FLOOR_SECONDS = 10
# Peers' heartbeats (docs/peer-protocol.md, subscribe_heartbeat): 0 turns them off; below
# this a heartbeat would cost more than the stall it finds sooner.
HEARTBEAT_INTERVAL_FLOOR_MS = 20


def _at_least(floor: int, unit: str, why: str) -> MinValueValidator:
    return MinValueValidator(floor, message=f"Must be at least {floor} {unit}: {why}")


def _at_most(ceiling: int, unit: str) -> MaxValueValidator:
    # A missed failure is as bad as a false one: a server gone for minutes must not wait.
    return MaxValueValidator(
        ceiling, message=f"Must be at most {ceiling} {unit}: a failed server's work would wait that long."
    )


class Policy(models.Model):
    """Timings and switches that govern detection, switchover and session handling.

    A singleton (``id`` is always 1, enforced by the database); ``Policy.current()``
    returns it, creating the defaults the first time.
    """

    probe_interval_ms = models.PositiveIntegerField(default=500, validators=[MinValueValidator(50)])
    probe_timeout_ms = models.PositiveIntegerField(default=400, validators=[MinValueValidator(20)])
    rise = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1)], help_text="Consecutive good probes before a peer is up."
    )
    fall = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1)], help_text="Consecutive failed probes before a peer is down."
    )
    flap_window_seconds = models.PositiveIntegerField(default=60)
    flap_max_transitions = models.PositiveSmallIntegerField(
        default=4, help_text="More health changes than this within the window hold the peer out until it is stable."
    )
    # A peer that can push heartbeats over the held connection is judged by them rather than
    # by probe time-outs: a stopped peer is suspected a few heartbeats after it went
    # silent (failover/monitor/phi.py). Peers that cannot are probed as before.
    heartbeat_interval_ms = models.PositiveIntegerField(
        default=100,
        validators=[MaxValueValidator(10_000)],
        help_text="How often each peer pushes a heartbeat over the monitor's connection "
        f"(0: no heartbeats, probes only; otherwise at least {HEARTBEAT_INTERVAL_FLOOR_MS}). "
        "With many peers the monitor asks for fewer: at most 4,000 heartbeats a second in all.",
    )
    heartbeat_suspicion = models.FloatField(
        default=8.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(30.0)],
        help_text="The phi accrual suspicion level at which a silent peer is declared down: "
        "8 means a silence that the peer's own heartbeat history makes a one-in-10^8 chance.",
    )
    fail_back_after_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: never fail back by itself (non-preemptive)."
    )
    transit_timeout_seconds = models.PositiveIntegerField(default=10, validators=[MinValueValidator(1)])
    max_transit_attempts = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Routes not confirmed within the transit timeout before the session ends as 'transit failed'. "
        "Empty: back to the head of the queue every time.",
    )
    hung_up_grace_seconds = models.PositiveIntegerField(
        null=True, blank=True, help_text="Empty: sessions whose caller hung up wait for the agent to end them."
    )
    # Off by default, as in the original design: the agent ends such sessions by hand.
    phone_untracked_grace_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[
            MinValueValidator(60, message="Must be at least 60 s: give the agent time to finish the call."),
            MaxValueValidator(86_400, message="Must be at most 86,400 s (a day)."),
        ],
        help_text="Empty: sessions whose phone state became unknown (their Media Blender was switched "
        "away from) wait for the agent to end them. Otherwise they end after this many seconds "
        "as 'phone untracked'.",
    )
    adopt_queued_on_server_failure = models.BooleanField(default=True)
    agent_max_sessions = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="Sessions at once a new agent can take (agents added by the wizard or by Verify and Sync).",
    )
    # Servers have their own thresholds: a server failure ends every agent log-in and
    # session of that server, so it is declared only on evidence that the node is gone
    # (docs/architecture.md, "Busy is not dead"), never on the peers' sub-second time-outs.
    server_probe_interval_ms = models.PositiveIntegerField(
        default=500,
        validators=[_at_least(100, "ms", "each probe opens a new connection to the node."), _at_most(10_000, "ms")],
        help_text="How often each server's node is asked for /healthz.",
    )
    server_probe_timeout_ms = models.PositiveIntegerField(
        default=1000,
        validators=[
            _at_least(
                SERVER_PROBE_TIMEOUT_FLOOR_MS,
                "ms",
                "a node busy with requests can take that long to answer /healthz; "
                "a shorter time-out makes a busy node look failed.",
            ),
            _at_most(10_000, "ms"),
        ],
        help_text="How long a server probe waits for /healthz. A time-out alone never fails a server.",
    )
    server_silence_seconds = models.PositiveSmallIntegerField(
        default=3,
        validators=[
            _at_least(
                SERVER_SILENCE_FLOOR_SECONDS,
                "s",
                "nodes write their heartbeat every second; a shorter silence reads one late write as a dead node.",
            ),
            _at_most(60, "s"),
        ],
        help_text="A server whose /healthz does not answer is failed once its node's own heartbeat "
        "has been silent this long.",
    )
    server_unresponsive_seconds = models.PositiveSmallIntegerField(
        default=30,
        validators=[
            _at_least(
                SERVER_UNRESPONSIVE_FLOOR_SECONDS,
                "s",
                "without a heartbeat to tell a busy node from a dead one, only a long silence is evidence.",
            ),
            _at_most(600, "s"),
        ],
        help_text="When no heartbeat of the node can be read: how long /healthz must go unanswered "
        "before the server is failed.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "policy"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="failover_policy_singleton")]

    def __str__(self) -> str:
        return "Failover policy"

    def clean(self) -> None:
        if self.heartbeat_interval_ms and self.heartbeat_interval_ms < HEARTBEAT_INTERVAL_FLOOR_MS:
            raise ValidationError(
                {
                    "heartbeat_interval_ms": f"Must be 0 (no heartbeats) or at least {HEARTBEAT_INTERVAL_FLOOR_MS} ms: "
                    "faster heartbeats cost the monitor more than they gain."
                }
            )
        # Without a heartbeat to go by, the evidence is weaker: it must take at least as long.
        if (
            self.server_unresponsive_seconds is not None
            and self.server_silence_seconds is not None
            and self.server_unresponsive_seconds < self.server_silence_seconds
        ):
            raise ValidationError(
                {
                    "server_unresponsive_seconds": "Must be at least the server silence "
                    f"({self.server_silence_seconds} s): a node without a heartbeat to read must not "
                    "be failed sooner than one whose heartbeat says it stopped."
                }
            )

    @classmethod
    def current(cls) -> Policy:
        policy, _ = cls.objects.get_or_create(id=1)
        return policy
