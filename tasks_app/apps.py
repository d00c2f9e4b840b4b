from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    name = "tasks_app"
    verbose_name = "Tasks"

    def ready(self) -> None:
        from . import accounts, ws_access  # noqa: F401  (ws_access: its signal receivers)

        accounts.connect()
