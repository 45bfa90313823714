"""The owner's rating of an answer (thumbs up or down, with an optional comment)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User

from chat.actions.errors import ActionError
from chat.models import Conversation, Feedback, Message

COMMENT_MAX = 2000


def do_rate(
    conversation: Conversation, user: User, message_id: Any, rating: Any, comment: Any
) -> Feedback | None:
    """Rate an assistant answer (1 or -1, None clears the rating) with an optional comment."""
    try:
        message = conversation.messages.get(pk=int(message_id), role=Message.Role.ASSISTANT)
    except (Message.DoesNotExist, TypeError, ValueError):
        raise ActionError("no_message", "There is no such answer to rate.") from None
    if message.status == Message.Status.STREAMING:
        raise ActionError("still_streaming", "Wait for the answer to finish before rating it.")
    if rating is None:
        Feedback.objects.filter(message=message, user=user).delete()
        return None
    if rating not in (Feedback.Rating.UP, Feedback.Rating.DOWN) or isinstance(rating, bool):
        raise ActionError("invalid_rating", "A rating is 1 (good) or -1 (bad).")
    if not isinstance(comment, str):
        comment = ""
    if len(comment) > COMMENT_MAX:
        raise ActionError("comment_too_long", f"Keep the comment under {COMMENT_MAX} characters.")
    feedback, _created = Feedback.objects.update_or_create(
        message=message,
        user=user,
        defaults={"conversation": conversation, "rating": rating, "comment": comment.strip()},
    )
    return feedback


def feedback_by_message(conversation: Conversation, user: User) -> dict[str, Any]:
    """The user's ratings in this conversation, by message id (for the page)."""
    rows = Feedback.objects.filter(conversation=conversation, user=user)
    return {str(f.message_id): {"rating": f.rating, "comment": f.comment} for f in rows}
