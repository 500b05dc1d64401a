"""The base of the commands that run in the background beside the web server (a step worker,
the reconciler, the scheduler, the dispatcher, the deployments keeper)."""

from __future__ import annotations

from django.core.management.base import BaseCommand


class BackgroundCommand(BaseCommand):
    # Django's system checks (URLs, admin, templates) are the web server's: `serve` runs them as
    # it starts. Run again by each of these at each start, a restart included, they cost it 0.4 s.
    requires_system_checks: list[str] = []
