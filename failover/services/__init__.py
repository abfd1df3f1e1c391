"""Services: the only code that changes failover state (HackSoft style: services write, selectors read)."""
