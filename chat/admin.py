from django.contrib import admin

from chat.models import Conversation, Message, Turn


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Logs are evidence: staff read them, nobody edits them by accident."""

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


class MessageInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Message
    fields = ("id", "role", "status", "content", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ("title", "owner", "model", "created_at", "updated_at")
    list_filter = ("model", "created_at")
    search_fields = ("title", "owner__username", "messages__content")
    date_hierarchy = "updated_at"
    inlines = [MessageInline]


@admin.register(Turn)
class TurnAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "conversation",
        "status",
        "model",
        "error_code",
        "created_at",
        "finished_at",
    )
    list_filter = ("status", "model", "error_code")
    search_fields = ("conversation__title", "error")
    date_hierarchy = "created_at"


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = ("id", "conversation", "role", "status", "created_at")
    list_filter = ("role", "status")
    search_fields = ("content",)
    date_hierarchy = "created_at"
