"""Pytest fixtures that start real peers (Dovecot, aiosmtpd) on loopback. Filled in by the peers work."""

from __future__ import annotations
