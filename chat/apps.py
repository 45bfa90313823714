from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ChatConfig(AppConfig):
    name = "chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from chat.review import ensure_reviewers_group

        # After the permissions exist (auth's post_migrate handler runs first).
        post_migrate.connect(ensure_reviewers_group, dispatch_uid="chat.reviewers_group")
