"""Tests of the Administration desktop (issue 5): /ws/status/, the overview page and its actions."""
