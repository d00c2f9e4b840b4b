from django.contrib.auth import views as auth_views
from django.urls import path

from . import ops, views

urlpatterns = [
    path("", views.task_list, name="task-list"),
    path("tasks/new", views.task_submit, name="task-submit"),
    path("tasks/batch", views.task_batch, name="task-batch"),
    path("tasks/<str:task_id>", views.task_detail, name="task-detail"),
    path("tasks/<str:task_id>/cancel", views.task_cancel, name="task-cancel"),
    path("tasks/<str:task_id>/retry", views.task_retry, name="task-retry"),
    path("dashboard", views.dashboard, name="dashboard"),
    path("dashboard/flow", views.dashboard_flow, name="dashboard-flow"),
    path("healthz", ops.healthz, name="healthz"),
    path("metrics", ops.metrics, name="metrics"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
