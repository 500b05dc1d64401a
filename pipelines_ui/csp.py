"""The Content-Security-Policy header (django-csp), with the parts that depend on the request."""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

# django-rq's dashboard (staff only, inside the admin) is a third-party page written with inline
# scripts and styles; it alone gets them.
INLINE_CODE_PREFIXES = ("/admin/django_rq/",)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """settings.CONTENT_SECURITY_POLICY, plus this host's websocket origins in connect-src.

    `'self'` covers ws:// and wss:// of the page's own host only in browsers that follow CSP
    level 3; naming them keeps the run page live in the others.
    """

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        if report_only:
            return parts
        update = dict(parts.update or {})
        try:
            host = request.get_host()
        except DisallowedHost:
            host = ""  # the response is already the 400 that says so
        if host:
            update["connect-src"] = [*update.get("connect-src", ()), f"ws://{host}", f"wss://{host}"]
        if request.path_info.startswith(INLINE_CODE_PREFIXES):
            for directive in ("script-src", "style-src"):
                update[directive] = [*update.get(directive, ()), "'unsafe-inline'"]
        parts.update = update
        return parts
