"""REST API of the failover app (the administrators' console), mounted under /api/v1/."""
