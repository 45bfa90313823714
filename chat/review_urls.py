from django.urls import path

from chat import review_views

app_name = "review"
urlpatterns = [
    path("usage/", review_views.usage, name="usage"),
    path("c/<uuid:conversation_id>/", review_views.transcript, name="transcript"),
    path(
        "c/<uuid:conversation_id>/outputs/<int:output_id>/image",
        review_views.transcript_image,
        name="image",
    ),
    path(
        "c/<uuid:conversation_id>/files/<int:file_id>/",
        review_views.download_file,
        name="file",
    ),
    path("c/<uuid:conversation_id>/export.<str:fmt>", review_views.export_one, name="export"),
    path("c/<uuid:conversation_id>/flag/", review_views.flag, name="flag"),
    path("c/<uuid:conversation_id>/notes/", review_views.add_note, name="note"),
]
