import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "codeact_web.settings")
# Django must be set up before anything imports models (consumers do).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chat.routing import websocket_urlpatterns  # noqa: E402
from codeact_web.body_limit import BodyLimitMiddleware, install_daphne_guard  # noqa: E402
from codeact_web.origin import SameOriginValidator  # noqa: E402

# Daphne imports this module before it listens: its requests count their body
# bytes from here on (see codeact_web/body_limit.py for why the ASGI layer alone
# is too late under Daphne).
install_daphne_guard()

application = ProtocolTypeRouter(
    {
        "http": BodyLimitMiddleware(django_asgi_app),
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
