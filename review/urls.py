from django.urls import path

from review import evaluations, views

app_name = "review"
urlpatterns = [
    path("usage/", views.usage, name="usage"),
    path("c/<uuid:conversation_id>/", views.transcript_page, name="transcript"),
    path(
        "c/<uuid:conversation_id>/outputs/<int:output_id>/image",
        views.transcript_image,
        name="image",
    ),
    path("c/<uuid:conversation_id>/files/<int:file_id>/", views.download_file, name="file"),
    path("c/<uuid:conversation_id>/export.<str:fmt>", views.export_one, name="export"),
    path("c/<uuid:conversation_id>/flag/", views.flag, name="flag"),
    path("c/<uuid:conversation_id>/notes/", views.add_note, name="note"),
    path("evaluations/", evaluations.evaluation_list, name="evaluations"),
    path("evaluations/compare/", evaluations.evaluation_compare, name="evaluation_compare"),
    path("evaluations/<int:evaluation_id>/", evaluations.evaluation_detail, name="evaluation"),
    path(
        "evaluations/<int:evaluation_id>/export.<str:fmt>",
        evaluations.evaluation_export,
        name="evaluation_export",
    ),
]
