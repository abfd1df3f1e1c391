"""One structured log line for every health change, switchover, alert and server failure.

Operators read a failover in the process logs (``bin/run``'s output, a log collector)
as well as on the desktops: each line is a JSON object (collabadmin/logging.py) on the
``failover.events`` logger, with ``event`` naming what happened and the figures as fields
(epochs, how the failure was noticed, the detection and switch-over times in ms).

Written when the transaction commits, like the live events: a change that rolls back
is never logged as if it had happened.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

log = logging.getLogger("failover.events")


def record(event: str, message: str, *, level: int = logging.INFO, **figures: Any) -> None:
    """Log ``message`` with ``event`` and ``figures`` once the current transaction commits."""
    fields = {"event": event, **{key: value for key, value in figures.items() if value is not None}}
    transaction.on_commit(lambda: log.log(level, message, extra=fields))


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
