"""Settings of the test Django project: no database, no templates, errors to stderr."""

from __future__ import annotations

SECRET_KEY = "gunrunner-tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.apps.django_app.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, dict[str, str]] = {}
TEMPLATES: list[dict[str, object]] = []
USE_TZ = True
# Django sets the process's TZ from this: UTC keeps the server log's timestamps as they are.
TIME_ZONE = "UTC"
# Small enough that a refused form body fits in the socket buffers (see the 400 test);
# file parts of a multipart upload do not count against it, raw reads neither.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
# Uploaded files above 1 MiB are spooled to a temporary file (the on-disk path is tested).
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# Production-like: request errors (with their traceback) go to stderr, the server log.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {"django.request": {"handlers": ["stderr"], "level": "ERROR"}},
}
