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
    path("openapi.json", views.openapi, name="api-openapi"),
    path("cache", tools_api.cache, name="api-cache"),
]
