"""Responses that hand a user's data to the browser: never rendered, never sniffed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header

from chat import exports
from chat.actions import files
from chat.models import Conversation, Output, WorkspaceFile


def attachment(content: bytes | str, content_type: str, name: str) -> HttpResponse:
    """A download under `name` (Content-Disposition: attachment)."""
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, name) or "attachment"
    return no_sniff(response)


def no_sniff[R: HttpResponseBase](response: R) -> R:
    """Served as its declared type only; if opened directly, an SVG (or anything)
    must not run script or load anything."""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


def workspace_file(file: WorkspaceFile) -> HttpResponseBase:
    """A workspace file (an upload, or what the code wrote) under its own name,
    streamed from the database a piece at a time (its content need not be loaded)."""
    response = StreamingHttpResponse(_chunks(file.pk), content_type="application/octet-stream")
    response["Content-Length"] = str(file.size)
    name = file.path.rsplit("/", 1)[-1]
    response["Content-Disposition"] = content_disposition_header(True, name) or "attachment"
    return no_sniff(response)


async def _chunks(file_id: int) -> AsyncIterator[bytes]:
    """The file's pieces for an ASGI server, each read in the thread that holds the
    database connection (a plain iterator would make Django read it all first)."""
    pieces = files.content_chunks(file_id)

    def read() -> bytes:
        return next(pieces, b"")

    while piece := await sync_to_async(read, thread_sensitive=True)():
        yield piece


def output_image(output: Output) -> HttpResponse:
    """A plot or other image a cell displayed, as its own type."""
    return no_sniff(HttpResponse(bytes(output.image or b""), content_type=output.image_mime))


def notebook(conversation: Conversation) -> HttpResponse:
    """The conversation as a Jupyter notebook named after its title."""
    return attachment(
        exports.notebook_json(conversation),
        "application/x-ipynb+json",
        f"{exports.export_stem(conversation)}.ipynb",
    )


def markdown(conversation: Conversation) -> HttpResponse:
    """The conversation as Markdown named after its title."""
    return attachment(
        exports.markdown(conversation),
        "text/markdown; charset=utf-8",
        f"{exports.export_stem(conversation)}.md",
    )
