from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat import socket_sessions

        # Logout, a password change or deactivation closes the user's sockets.
        socket_sessions.connect_signals()
