"""Security tests of issue 8: deploy checks, Content Security Policy, log-in lockout, CSRF, WebSockets."""
