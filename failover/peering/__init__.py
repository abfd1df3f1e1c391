"""Peer protocol, peer simulators (Media Blender, ICM Admin Workstation) and the client adapter.

Pure asyncio, no Django: ``client`` is the only module the rest of the server uses to talk
to a peer; the simulators are real TCP servers run with ``python -m failover.peering``.
The wire protocol is documented in ``docs/peer-protocol.md``.
"""
