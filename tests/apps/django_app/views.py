"""Views of the test Django project; sync and async iterators depending on the interface."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.handlers.asgi import ASGIRequest
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import reverse

CHUNK = 64 * 1024
# Longest a gated stream waits for the test to create its gate file.
GATE_TIMEOUT = 10.0


def interface(request: HttpRequest) -> str:
    return "asgi" if isinstance(request, ASGIRequest) else "wsgi"


def info(request: HttpRequest) -> JsonResponse:
    """What Django made of the request: paths, scheme, client address, host."""
    return JsonResponse(
        {
            "pid": os.getpid(),
            "interface": interface(request),
            "path": request.path,
            "path_info": request.path_info,
            "script_name": request.META["SCRIPT_NAME"],
            "reverse": reverse("info"),
            "absolute": request.build_absolute_uri(),
            "is_secure": request.is_secure(),
            "scheme": request.scheme,
            "remote_addr": request.META["REMOTE_ADDR"],
            "host": request.get_host(),
        }
    )


def _digest(stream: IO[bytes] | HttpRequest) -> dict[str, int | str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return {"len": size, "sha256": digest.hexdigest()}


def upload(request: HttpRequest) -> JsonResponse:
    """A multipart form: the text field and the file as Django parsed them."""
    upload = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    return JsonResponse(
        {
            "name": request.POST["name"],
            "filename": upload.name,
            "content_type": upload.content_type,
            "len": upload.size,
            "sha256": digest.hexdigest(),
            "on_disk": isinstance(upload, TemporaryUploadedFile),
        }
    )


def form(request: HttpRequest) -> JsonResponse:
    """A urlencoded form (DATA_UPLOAD_MAX_MEMORY_SIZE applies: 400 above it)."""
    return JsonResponse({key: request.POST.getlist(key) for key in request.POST})


def raw(request: HttpRequest) -> JsonResponse:
    """The raw body, read in blocks.

    Django's WSGIRequest reads CONTENT_LENGTH bytes, hence nothing of a chunked body; the
    server marks its wsgi.input as terminated (it ends at the body's end), so read that.
    """
    stream: IO[bytes] | HttpRequest = request
    if (
        interface(request) == "wsgi"
        and "CONTENT_LENGTH" not in request.META
        and request.META.get("wsgi.input_terminated")
    ):
        stream = request.META["wsgi.input"]
    return JsonResponse(
        {**_digest(stream), "chunked": "chunked" in request.headers.get("Transfer-Encoding", "")}
    )


def _lines(count: int) -> Iterator[bytes]:
    for i in range(count):
        yield b"line %d\n" % i


async def _async_lines(count: int) -> AsyncIterator[bytes]:
    for i in range(count):
        yield b"line %d\n" % i
        await asyncio.sleep(0)


def stream(request: HttpRequest) -> StreamingHttpResponse:
    """n lines from a sync iterator under WSGI, from an async one under ASGI."""
    count = int(request.GET.get("n", "5"))
    if interface(request) == "asgi":
        response = StreamingHttpResponse(_async_lines(count), content_type="text/plain")
    else:
        response = StreamingHttpResponse(_lines(count), content_type="text/plain")
    response["X-Iterator"] = "async" if response.is_async else "sync"
    return response


def _gated(before: int, gate: Path) -> Iterator[bytes]:
    for i in range(before):
        yield b"before %d\n" % i
    deadline = time.monotonic() + GATE_TIMEOUT
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    yield b"released\n" if gate.exists() else b"gate timed out\n"


async def _async_gated(before: int, gate: Path) -> AsyncIterator[bytes]:
    for i in range(before):
        yield b"before %d\n" % i
    deadline = time.monotonic() + GATE_TIMEOUT
    while not gate.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    yield b"released\n" if gate.exists() else b"gate timed out\n"


def gated(request: HttpRequest) -> StreamingHttpResponse:
    """`before` chunks, then nothing until the file `gate` exists (bounded), then the end."""
    before = int(request.GET.get("before", "1"))
    gate = Path(request.GET["gate"])
    if interface(request) == "asgi":
        return StreamingHttpResponse(_async_gated(before, gate), content_type="text/plain")
    return StreamingHttpResponse(_gated(before, gate), content_type="text/plain")


def _failing() -> Iterator[bytes]:
    yield b"partial 0\n"
    yield b"partial 1\n"
    raise RuntimeError("django stream failed")


async def _async_failing() -> AsyncIterator[bytes]:
    yield b"partial 0\n"
    yield b"partial 1\n"
    await asyncio.sleep(0)
    raise RuntimeError("django stream failed")


def stream_error(request: HttpRequest) -> StreamingHttpResponse:
    """A streamed body whose iterator raises after two chunks."""
    if interface(request) == "asgi":
        return StreamingHttpResponse(_async_failing(), content_type="text/plain")
    return StreamingHttpResponse(_failing(), content_type="text/plain")


def file(request: HttpRequest) -> FileResponse:
    """FileResponse of the file named by `path` (a file the test wrote)."""
    return FileResponse(Path(request.GET["path"]).open("rb"), as_attachment=False)


def error(request: HttpRequest) -> HttpResponse:
    """An unhandled exception: Django answers 500 and logs it to django.request."""
    raise RuntimeError("django view failed")
