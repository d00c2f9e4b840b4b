"""Production settings: with the documented environment, ``check --deploy`` reports nothing;
a fresh data folder and its SQLite files are private to the service's user."""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest

from .stack import PYTHON, ROOT

pytestmark = pytest.mark.timeout(120)

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_ALLOWED_HOSTS": "claw.example",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://claw.example",
    "DJANGO_SECURE_COOKIES": "1",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_HSTS_PRELOAD": "1",
    "DJANGO_SSL_REDIRECT": "1",
    "DJANGO_TRUST_X_FORWARDED_PROTO": "1",
}


def manage(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))},
        "DJANGO_SETTINGS_MODULE": "clawsite.settings",
        "CLAWSITE_DATA_DIR": str(data_dir),
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(60),
        **env,
    }
    return subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_check_deploy_is_clean_with_the_documented_settings(tmp_path: Path) -> None:
    done = manage(tmp_path / "data", "check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
    # Without them it does warn (the test can fail): HSTS, redirect, cookies.
    bare = manage(
        tmp_path / "data", "check", "--deploy", "--fail-level", "WARNING", DJANGO_DEBUG="0"
    )
    for warning in ("W004", "W008", "W012", "W016"):
        assert warning in bare.stdout + bare.stderr


def test_a_fresh_data_folder_and_its_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = manage(data, "migrate", "-v0")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("clawsite.sqlite3", "clawsite.sqlite3-wal", "clawsite.sqlite3-shm"):
        path = data / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    assert (data / "clawsite.sqlite3").exists()
