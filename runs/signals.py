"""Signals the execution side sends to whoever listens, so that it imports nothing above it."""

from __future__ import annotations

from django.dispatch import Signal

# Sent by runs.transitions inside the transaction that moves a run to a terminal state, with
# `run` (its new state and timestamps set) and `state`. Receivers write in that transaction: what
# they write commits with the run's end or not at all (the notification outbox relies on it).
run_ended = Signal()

# Sent after the transaction that adds a data version commits, with `version_id`: data triggers
# start their runs then (a version rolled back starts nothing).
data_version_created = Signal()
