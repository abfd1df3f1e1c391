"""HTML pages of the sessions app: the Agent desktop (``agent``) and the caller's request
form (``caller``). Views stay thin: access checks and HTTP here, every change in a
service of ``sessions.services``."""
