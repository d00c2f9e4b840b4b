from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.task_list, name="task-list"),
    path("tasks/new", views.task_submit, name="task-submit"),
    path("tasks/<str:task_id>", views.task_detail, name="task-detail"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
