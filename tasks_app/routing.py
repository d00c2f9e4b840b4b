"""The websocket routes (authenticated by ``tasks_app.ws_auth``)."""

from __future__ import annotations

from django.urls import path

from .consumers import StatsConsumer, TaskDetailConsumer, TaskUpdatesConsumer

websocket_urlpatterns = [
    path("ws/tasks/", TaskUpdatesConsumer.as_asgi()),
    path("ws/tasks/<str:task_id>/", TaskDetailConsumer.as_asgi()),
    path("ws/stats/", StatsConsumer.as_asgi()),
]
