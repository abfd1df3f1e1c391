"""Servers, peers, links, health, switchovers, alerts, audit and configuration sync."""
