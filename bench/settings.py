"""Settings for the processes a bench starts: ClawSite's own, plus the bench app (a no-op tool,
the bare JSON view the HTTP figures are compared with). Production never loads this module."""

from clawsite.settings import *  # noqa: F403
from clawsite.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]
ROOT_URLCONF = "bench.urls"
