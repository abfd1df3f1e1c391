"""Times as the API and the live updates write them."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_datetime(value: datetime | None) -> str | None:
    """The same text DRF's DateTimeField renders (UTC, ``Z`` suffix), so snapshot and REST agree."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text
