"""URLs of the test Django project."""

from __future__ import annotations

from django.urls import path

from tests.apps.django_app import views

urlpatterns = [
    path("info/", views.info, name="info"),
    path("upload/", views.upload, name="upload"),
    path("form/", views.form, name="form"),
    path("raw/", views.raw, name="raw"),
    path("stream/", views.stream, name="stream"),
    path("gated/", views.gated, name="gated"),
    path("stream-error/", views.stream_error, name="stream-error"),
    path("file/", views.file, name="file"),
    path("error/", views.error, name="error"),
]
