from django.urls import path

from chat import views

app_name = "chat"
urlpatterns = [
    path("", views.home, name="home"),
    path("c/new/", views.new_conversation, name="new"),
    path("c/<uuid:conversation_id>/", views.conversation_page, name="conversation"),
    path("c/<uuid:conversation_id>/rename/", views.rename_conversation, name="rename"),
    path("c/<uuid:conversation_id>/delete/", views.delete_conversation, name="delete"),
    path("c/<uuid:conversation_id>/files/", views.upload_files, name="upload"),
    path("c/<uuid:conversation_id>/files/<int:file_id>/", views.download_file, name="download"),
    path(
        "c/<uuid:conversation_id>/files/<int:file_id>/delete/",
        views.delete_file,
        name="delete_file",
    ),
    path(
        "c/<uuid:conversation_id>/messages/<int:message_id>/feedback/",
        views.rate_message,
        name="feedback",
    ),
    path("c/<uuid:conversation_id>/export.ipynb", views.export_notebook, name="export_ipynb"),
    path("c/<uuid:conversation_id>/export.md", views.export_markdown, name="export_md"),
    path(
        "c/<uuid:conversation_id>/outputs/<int:output_id>/image",
        views.output_image,
        name="output_image",
    ),
]
