"""The ASGI application: HTTP (Django), websockets (watchers), and the worker's channel."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clawsite.settings")
django_application = get_asgi_application()

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from clawsite.handlers import ApiASGIHandler, route_api, route_path  # noqa: E402
from tasks_app.consumers import TaskWorkerConsumer  # noqa: E402
from tasks_app.mcp.transport import mcp_application  # noqa: E402
from tasks_app.routing import websocket_urlpatterns  # noqa: E402
from tasks_app.ws_auth import WebsocketAuthMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": route_path(
            "/mcp", mcp_application, route_api(ApiASGIHandler(), django_application)
        ),
        "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urlpatterns)),
        "channel": ChannelNameRouter(
            {settings.CLAWSITE_WORKER_CHANNEL: TaskWorkerConsumer.as_asgi()}
        ),
    }
)
