"""REST API of the sessions app (agents and collaboration sessions), mounted under /api/v1/."""
