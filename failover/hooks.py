"""What the rest of the product does when the failover engine changes something.

``failover`` sits below ``sessions`` and the configuration sync: it never imports them.
They tell it what to do by registering handlers here when their app is ready
(``AppConfig.ready``); the engine calls the hooks. A hook runs *inside* the caller's
transaction, so what it does commits or rolls back with the switchover or the failure
that caused it (a handler that talks to the outside world schedules that work with
``transaction.on_commit`` itself). Without handlers (the engine alone, in its own tests)
a hook does nothing.

- ``link_switched(link, connected=peer)``: a link has a newly connected peer, or none.
- ``server_failed(server=..., at=...)``: a Collaboration Server failed; end its work and
  say what was ended (one handler: the sessions app's).
- ``server_drain_changed(server=..., actor=..., reason=...)``: a server was put in drain or
  taken out (planned maintenance): hand its queue on, tell its agents; returns how many
  queued sessions moved (one handler: the sessions app's).
- ``work_at_failure(server=...)``: a failure is about to change a server's work; the
  handler notes what was open then and returns a snapshot whose ``record(event)`` keeps
  it with the failure's event (one handler: the sessions app's incident snapshot).
- ``routes_confirmed(confirmations)`` and ``phone_hung_up(...)``: what a connected Media
  Blender reported (one handler each).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from failover.models import Link, Peer, Server

# A route confirmation the Media Blender may have sent before the route's own commit:
# the monitor tries it again shortly (the value of the handler's outcome).
CONFIRMATION_EARLY = "early"


class WorkEnded(Protocol):
    """What ending a failed server's work did, as the failure's event and audit say it."""

    def describe(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class NothingEnded:
    """No handler: the engine alone ends nothing."""

    def describe(self) -> str:
        return "no work to end"

    def as_dict(self) -> dict[str, Any]:
        return {}


class WorkSnapshot(Protocol):
    """What was open on a server when a failure struck, kept with the failure's event."""

    def record(self, event: Any) -> None: ...


@dataclass(frozen=True)
class NothingSnapshotted:
    """No handler: the engine alone has no work to remember."""

    def record(self, event: Any) -> None:
        return None


LinkSwitched = Callable[..., None]  # (link: Link, *, connected: Peer | None)
ServerFailed = Callable[..., WorkEnded]  # (*, server: Server, at: datetime)
ServerDrainChanged = Callable[..., int]  # (*, server: Server, actor, reason: str) -> queued moved
RoutesConfirmed = Callable[[Sequence[tuple[object, str, int]]], list[str]]
PhoneHungUp = Callable[..., bool]  # (*, session_id, peer_id, agent_icm_id)
WorkAtFailure = Callable[..., WorkSnapshot]  # (*, server: Server) -> WorkSnapshot


@dataclass
class _Registry:
    link_switched: list[LinkSwitched] = field(default_factory=list)
    server_failed: ServerFailed | None = None
    server_drain_changed: ServerDrainChanged | None = None
    routes_confirmed: RoutesConfirmed | None = None
    phone_hung_up: PhoneHungUp | None = None
    work_at_failure: WorkAtFailure | None = None


_registry = _Registry()


def on_link_switched(handler: LinkSwitched) -> None:
    """Call ``handler`` after every switchover, in registration order (once per handler)."""
    if handler not in _registry.link_switched:
        _registry.link_switched.append(handler)


def on_server_failed(handler: ServerFailed) -> None:
    _registry.server_failed = handler


def on_server_drain_changed(handler: ServerDrainChanged) -> None:
    _registry.server_drain_changed = handler


def on_media_blender_events(*, routes_confirmed: RoutesConfirmed, phone_hung_up: PhoneHungUp) -> None:
    _registry.routes_confirmed = routes_confirmed
    _registry.phone_hung_up = phone_hung_up


def on_work_at_failure(handler: WorkAtFailure) -> None:
    _registry.work_at_failure = handler


def work_at_failure(*, server: Server) -> WorkSnapshot:
    """The server's open work, noted before a failure changes it (nothing without a handler)."""
    if _registry.work_at_failure is None:
        return NothingSnapshotted()
    return _registry.work_at_failure(server=server)


def link_switched(link: Link, *, connected: Peer | None) -> None:
    for handler in _registry.link_switched:
        handler(link, connected=connected)


def server_failed(*, server: Server, at: datetime) -> WorkEnded:
    if _registry.server_failed is None:
        return NothingEnded()
    return _registry.server_failed(server=server, at=at)


def server_drain_changed(*, server: Server, actor: object, reason: str) -> int:
    """How many queued sessions the handler moved off the server (0 without a handler)."""
    if _registry.server_drain_changed is None:
        return 0
    return _registry.server_drain_changed(server=server, actor=actor, reason=reason)


def routes_confirmed(confirmations: Sequence[tuple[object, str, int]]) -> list[str]:
    """Each confirmation's outcome (``CONFIRMATION_EARLY`` to try again), in order."""
    if _registry.routes_confirmed is None:
        return ["ignored"] * len(confirmations)
    return [str(outcome) for outcome in _registry.routes_confirmed(confirmations)]


def phone_hung_up(*, session_id: str, peer_id: int, agent_icm_id: str | None) -> bool:
    if _registry.phone_hung_up is None:
        return False
    return _registry.phone_hung_up(session_id=session_id, peer_id=peer_id, agent_icm_id=agent_icm_id)
