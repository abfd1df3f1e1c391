"""The Unicode controls that reorder text, and their removal from rendered HTML.

Why here: every HTML response loses them on its way out (``collabadmin/bidi.py``), and a
shared live fragment loses them once, when it is rendered (``console/live_fragments.py``:
its blocks are then sent alone, console/live_blocks.py, and must be as clean as the whole).
"""

from __future__ import annotations

import re

CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# One character class over the decoded body: a single linear scan; most pages have
# nothing to remove, and are then sent as they were.
_CONTROL = re.compile(f"[{CONTROLS}]")


def without_controls(content: bytes) -> bytes:
    """``content`` without the controls; the very same object when it has none."""
    text = content.decode(errors="surrogateescape")
    if not _CONTROL.search(text):
        return content
    return _CONTROL.sub("", text).encode(errors="surrogateescape")
