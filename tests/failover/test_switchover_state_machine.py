"""A Hypothesis state machine drives one pair through any sequence of peer failures,
stalls, recoveries, maintenance, manual switchovers and ICM side reports, checking the
pair's rules (and that its open alerts are exactly what its state implies) after every
step."""

from __future__ import annotations

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from failover.choices import AlertKind, Health, IcmSide, LinkState, PeerConnection, PeerKind, PeerPriority
from failover.models import Alert, Link, Peer
from failover.services.health import peer_health_changed
from failover.services.link_alerts import link_alerts_implied
from failover.services.maintenance import peer_set_maintenance
from failover.services.peers import peer_record_icm_side
from failover.services.switchover import SwitchoverRefused, link_switchover
from tests.factories import PeerFactory, ServerFactory

PEERS = st.sampled_from([0, 1])


def peers_by_priority(peers: list[Peer]) -> list[Peer]:
    return sorted(peers, key=lambda p: p.priority)


class PairMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        server = ServerFactory()
        self.peers = [
            PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.PRIMARY),
            PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=PeerPriority.SECONDARY),
        ]
        self.link = Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)
        self.last_epoch = 0

    def _health(self, index: int, health: Health) -> None:
        peer_health_changed(peer_id=self.peers[index].pk, health=health, at=timezone.now())

    @rule(index=PEERS)
    def peer_comes_up(self, index: int) -> None:
        self._health(index, Health.UP)

    @rule(index=PEERS)
    def peer_is_killed(self, index: int) -> None:
        self._health(index, Health.DOWN)

    @rule(index=PEERS)
    def peer_stalls(self, index: int) -> None:
        # A stall is seen as probe time-outs: the same DOWN decision, reached later.
        self._health(index, Health.DOWN)

    @rule(index=PEERS, on=st.booleans())
    def maintenance(self, index: int, on: bool) -> None:
        peer_set_maintenance(peer_id=self.peers[index].pk, on=on, actor="test", reason="machine")

    @rule(index=PEERS)
    def manual_switch(self, index: int) -> None:
        try:
            link_switchover(link_id=self.link.pk, actor="test", reason="machine", to_peer_id=self.peers[index].pk)
        except SwitchoverRefused:
            pass

    @rule(stale=st.booleans())
    def manual_switch_with_epoch(self, stale: bool) -> None:
        epoch = Link.objects.get(pk=self.link.pk).epoch - (1 if stale else 0)
        try:
            result = link_switchover(link_id=self.link.pk, actor="test", reason="machine", expected_epoch=epoch)
        except SwitchoverRefused:
            return
        if stale:
            assert result.outcome == "stale"

    @rule(index=PEERS, side=st.sampled_from(list(IcmSide)))
    def mb_reports_its_icm_side(self, index: int, side: IcmSide) -> None:
        peer_record_icm_side(peer_id=self.peers[index].pk, side=side)

    @invariant()
    def the_open_alerts_are_exactly_what_the_pair_implies(self) -> None:
        link = Link.objects.get(pk=self.link.pk)
        peers = list(link.peers().order_by("priority"))
        opened = dict(Alert.objects.filter(link=link, cleared_at__isnull=True).values_list("kind", "message"))
        implied = {kind: alert.message for kind, alert in link_alerts_implied(link, peers).items()}
        assert opened == implied
        # And in the pair's own terms: down (once every peer had its verdict) is link down.
        verdicts_in = not any(p.health == Health.UNKNOWN and not p.in_maintenance for p in peers)
        assert (AlertKind.LINK_DOWN in opened) == (link.state == LinkState.DOWN and verdicts_in)

    @invariant()
    def at_most_one_connected_and_exactly_one_when_any_peer_is_eligible(self) -> None:
        peers = list(Peer.objects.filter(pk__in=[p.pk for p in self.peers]))
        connected = [p for p in peers if p.connection == PeerConnection.CONNECTED]
        eligible = [p for p in peers if p.health == Health.UP and not p.in_maintenance]
        assert len(connected) <= 1
        link = Link.objects.get(pk=self.link.pk)
        waiting_for_primary = link.epoch == 0 and peers_by_priority(peers)[0].health == Health.UNKNOWN
        if not waiting_for_primary:
            assert len(connected) == (1 if eligible else 0)
        if connected:
            assert connected[0] in eligible

    @invariant()
    def link_state_and_epoch_agree_with_the_peers(self) -> None:
        link = Link.objects.get(pk=self.link.pk)
        connected = list(link.peers().filter(connection=PeerConnection.CONNECTED))
        assert link.state == (LinkState.CONNECTED if connected else LinkState.DOWN)
        if connected:
            assert connected[0].connected_epoch == link.epoch
        assert link.epoch >= self.last_epoch
        self.last_epoch = link.epoch


@pytest.mark.django_db
def test_a_pair_keeps_its_rules_under_any_sequence_of_faults_and_actions():
    PairMachine.TestCase.settings = settings(
        max_examples=60,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    PairMachine.TestCase().runTest()
