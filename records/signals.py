"""Signals records send so that later layers (mail linking) can react without a model-level import."""

from __future__ import annotations

import django.dispatch

# Sent after a record gains addresses (inside the transaction that added them):
# sender=Record subclass, record=<Record>, addresses=list[str] (normalised).
record_addresses_added = django.dispatch.Signal()
