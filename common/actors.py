"""Who does a thing: a user, or the product itself under one of the names below.

Every service that changes state takes an ``actor`` and records it in the audit history:
a user's name there, or the system actor's string. One name per part of the product that
acts on its own, so the history says which part decided."""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

# A user, a system actor's name, or nobody known (an old row, a script).
Actor = AbstractBaseUser | str | None

MONITOR = "system:monitor"  # the health monitor: health changes, switchovers, server failures
FAILBACK = "system:failback"  # the preemptive return to the primary after it was stable
ROUTER = "system:router"  # the connected Media Blender's routing answers
MEDIA_BLENDER = "system:media-blender"  # what a Media Blender reported (a hang-up, ...)
POLICY = "system:policy"  # the session time-outs of the policy
WIZARD = "system:wizard"  # a configuration wizard run in the background
VERIFY = "system:verify"  # a Verify run nobody started by hand
VERIFY_AFTER_SWITCHOVER = "system:verify-after-switchover"  # the Verify an AW switchover starts
MAINTENANCE = "system:maintenance"  # a drained server's deadline ending its last sessions
SYNC = "system:sync"  # a Sync run in the background
COMMAND = "system:command"  # a manage.py command run by an operator (drain_server, ...)


def user_of(actor: Actor) -> AbstractBaseUser | None:
    """The user behind ``actor``, or ``None`` for the product itself."""
    return actor if isinstance(actor, AbstractBaseUser) else None
