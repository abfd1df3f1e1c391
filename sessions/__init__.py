"""Agents, skill groups and collaboration sessions (app label ``collab_sessions``)."""
