from django.urls import path

from tools_app import api as tools_api

from . import views

urlpatterns = [
    path("tools", views.tools, name="api-tools"),
    path("tasks", views.tasks, name="api-tasks"),
    path("tasks/batch", views.batch, name="api-tasks-batch"),
    path("tasks/lookup", views.lookup, name="api-tasks-lookup"),
    path("tasks/<str:task_id>", views.task, name="api-task"),
    path("tasks/<str:task_id>/cancel", views.cancel, name="api-task-cancel"),
    path("tasks/<str:task_id>/retry", views.retry, name="api-task-retry"),
    path("stats", views.queue_stats, name="api-stats"),
    path("queues", views.queue_list, name="api-queues"),
    path("queues/<str:name>/pause", views.queue_pause, name="api-queue-pause"),
    path("queues/<str:name>/resume", views.queue_resume, name="api-queue-resume"),
    path("openapi.json", views.openapi, name="api-openapi"),
    path("cache", tools_api.cache, name="api-cache"),
]
