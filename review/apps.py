from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReviewConfig(AppConfig):
    name = "review"
    verbose_name = "Review"

    def ready(self) -> None:
        from review import admin_invites  # noqa: F401  (registers the invite admin)
        from review.permissions import ensure_reviewers_group

        # After the permissions exist (auth's post_migrate handler runs first).
        post_migrate.connect(ensure_reviewers_group, dispatch_uid="review.reviewers_group")
