"""Settings for the processes a bench starts: ClawSite's own, plus the bench app (a no-op tool,
the bare JSON view the HTTP figures are compared with) and, as the reference of the Django task
figures, django-tasks-db (its ``db`` backend, on the same SQLite database). Production never
loads this module."""

from clawsite.settings import *  # noqa: F403
from clawsite.settings import INSTALLED_APPS, TASKS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig", "django_tasks_db"]
ROOT_URLCONF = "bench.urls"
TASKS = {**TASKS, "db": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
