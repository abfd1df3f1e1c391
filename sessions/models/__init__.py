"""Session models, one concept per module."""

from sessions.models.agents import Agent, SkillGroup
from sessions.models.incidents import IncidentSession
from sessions.models.samples import SessionSample
from sessions.models.sessions import CollaborationSession

__all__ = ["Agent", "CollaborationSession", "IncidentSession", "SessionSample", "SkillGroup"]
