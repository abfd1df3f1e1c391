"""The health monitor: probes every peer and server, decides up/down, triggers switchovers.

See docs/architecture.md for why it is a long-running asyncio loop inside each node
(with a database lease so only one acts) rather than a Celery beat schedule.
"""
