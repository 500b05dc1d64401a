"""Per-token rate limits, counted in Redis so that every server process sees the same count."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

from pipelines_ui.api.access import token_of
from runs.queues import instance_id


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def __init__(self):
        self.cache = caches["api"]
        super().__init__()

    def get_rate(self) -> str:
        # Read at each request, not once at import: settings may change (tests, reloads).
        return settings.STEPWISE_API_RATE

    def get_cache_key(self, request, view) -> str | None:
        token = token_of(request)
        if token is None:
            return None  # browser sessions: the sign-in throttle and CSRF protect those
        # By its hash, not its id: ids come back after a database is reset, counts would carry over.
        return f"stepwise:{instance_id()}:throttle:token:{token.token_sha256}"
