"""The failover engine tells the rest of the product through failover/hooks.py: the sessions
app and the wizards register at start-up; a hook runs inside the engine's transaction."""

from __future__ import annotations

import pytest
from django.db import transaction

from configsync.services.wizards import after_admin_workstation_switched
from failover import hooks
from failover.choices import FailoverKind, PeerKind, PeerPriority
from failover.models import Link
from failover.services.switchover import lock_link, pair_peers, switch
from sessions.services import followups, routes, server_failure
from tests.factories import PeerFactory, ServerFactory

pytestmark = pytest.mark.django_db


def test_the_apps_register_their_handlers_when_django_starts():
    registry = hooks._registry
    assert followups.after_link_switched in registry.link_switched
    assert after_admin_workstation_switched in registry.link_switched
    assert registry.server_failed is server_failure.end_work_of_failed_server
    assert registry.routes_confirmed is routes.session_confirm_routes
    assert registry.phone_hung_up is routes.session_phone_hung_up


@pytest.fixture
def recorded(monkeypatch):
    """A handler of the test's own, added to the real ones for one test."""
    calls = []
    handlers = [*hooks._registry.link_switched, lambda link, *, connected: calls.append((link.pk, connected))]
    monkeypatch.setattr(hooks._registry, "link_switched", handlers)
    return calls


def _media_blender_pair():
    server = ServerFactory()
    for priority in (PeerPriority.PRIMARY, PeerPriority.SECONDARY):
        PeerFactory(server=server, kind=PeerKind.MEDIA_BLENDER, priority=priority)
    return Link.objects.get(server=server, kind=PeerKind.MEDIA_BLENDER)


class Abandon(Exception):
    pass


def _switch_then_abandon(link: Link, recorded: list) -> None:
    with transaction.atomic():
        locked = lock_link(link.pk)
        primary, _ = pair_peers(locked)
        switch(locked, current=None, target=primary, kind=FailoverKind.MANUAL, actor="t", reason="t")
        assert recorded == [(link.pk, primary)], "called inside the switchover's transaction"
        raise Abandon


def test_a_switchover_calls_every_handler_with_the_new_peer_and_rolls_back_with_it(recorded):
    link = _media_blender_pair()
    with pytest.raises(Abandon):
        _switch_then_abandon(link, recorded)
    link.refresh_from_db()
    assert link.epoch == 0
    assert not link.peers().filter(connection="connected").exists()


def test_without_a_handler_a_failed_server_ends_nothing(monkeypatch):
    monkeypatch.setattr(hooks._registry, "server_failed", None)
    outcome = hooks.server_failed(server=ServerFactory(), at=None)
    assert (outcome.describe(), outcome.as_dict()) == ("no work to end", {})
