"""The installation every page test opens its pages over (``realistic.build``)."""

from __future__ import annotations

import pytest

from tests.pages.realistic import Installation, build
from tests.peering.conftest import start_peer  # noqa: F401  (fixture: real simulator processes)


@pytest.fixture
def installation(start_peer) -> Installation:  # noqa: F811
    """Built through the product's services against a real Admin Workstation process."""
    aw = start_peer("admin-workstation", "--name", "routing-a-aw-1")
    return build(aw)
