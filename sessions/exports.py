"""The columns of the sessions' CSV export, shared by the console's export link and the
API's ``export`` endpoint: (header, the cell of one row). The caller's contact details are
left out: an export travels further than the page.
"""

from __future__ import annotations

from common.csv_export import Column

SESSION_COLUMNS: list[Column] = [
    ("id", lambda s: str(s.pk)),
    ("queued_at", lambda s: s.queued_at),
    ("routed_at", lambda s: s.routed_at),
    ("activated_at", lambda s: s.activated_at),
    ("ended_at", lambda s: s.ended_at),
    ("state", lambda s: s.state),
    ("end_reason", lambda s: s.end_reason),
    ("end_note", lambda s: s.end_note),
    ("server", lambda s: s.server.name),
    ("skill_group", lambda s: s.skill_group.name if s.skill_group_id else ""),
    ("agent", lambda s: s.agent.display_name if s.agent_id else ""),
    ("caller_name", lambda s: s.caller_name),
    ("topic", lambda s: s.topic),
]
