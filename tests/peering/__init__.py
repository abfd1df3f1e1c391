"""Tests of the peer protocol, the simulators and the client adapter (no Django needed)."""
