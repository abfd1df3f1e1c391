"""Services: the only code that changes agents and sessions."""
