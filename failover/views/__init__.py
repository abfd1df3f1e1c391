"""The Administration desktop's failover pages and actions (staff only)."""
