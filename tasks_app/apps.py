from django.apps import AppConfig


class TasksAppConfig(AppConfig):
    name = "tasks_app"
    verbose_name = "Tasks"

    def ready(self) -> None:
        from . import accounts, ws_access  # noqa: F401  (ws_access: its signal receivers)

        accounts.connect()
        from django.db.models.signals import post_migrate

        post_migrate.connect(_seed_limits, sender=self)


def _seed_limits(**kwargs: object) -> None:
    """``migrate`` seeds CLAWSITE_LIMITS too (workers also do at start), so the admin shows
    the limits before any worker ran."""
    from .limits import seed_limits

    seed_limits()
