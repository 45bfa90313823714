"""What an operator should know on the admin home."""

from __future__ import annotations

from django import template
from django.conf import settings

from chat.models import SandboxRecord

register = template.Library()

RUNC_WARNING = (
    "The latest sandboxes run under runc, not gVisor: code from users shares the host's "
    "kernel, and uid 1000 inside is uid 1000 on the host. "
)
AUTO_HINT = (
    "The Docker engine has no runsc runtime; install gVisor and register it with dockerd "
    "(scripts/bootstrap does both), and new sandboxes use it."
)
FORCED_HINT = "CODEACT_SANDBOX_RUNTIME=runc forces this."


@register.simple_tag
def sandbox_runtime_warning() -> str:
    """Why the sandboxes are weaker than they could be, or "" (read from the runtime
    the most recently started sandbox got: the web side does not ask the engine)."""
    latest = (
        SandboxRecord.objects.filter(runtime__in=("runc", "runsc"))
        .order_by("-created_at", "-id")
        .values_list("runtime", flat=True)
        .first()
    )
    if latest != "runc":
        return ""
    forced = settings.CODEACT_SANDBOX_RUNTIME == "runc"
    return RUNC_WARNING + (FORCED_HINT if forced else AUTO_HINT)
