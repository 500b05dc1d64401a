"""ASGI entry point: HTTP through Django, websockets through Channels.

An oversize request body is refused before it is read (pipelines_ui/body_limit.py): by
daphne's request as it arrives, and by the ASGI layer around Django under other servers.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipelines_ui.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from pipelines_ui.body_limit import BodyLimitMiddleware, install_daphne_limit  # noqa: E402
from runs.routing import websocket_urlpatterns  # noqa: E402

install_daphne_limit()
application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
