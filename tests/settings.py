"""Test settings: a private data folder and a private Redis key prefix per run, so test runs
(and the processes they start) never meet another run's rows or keys."""

import os
import tempfile
import uuid

os.environ.setdefault("CLAWSITE_DATA_DIR", tempfile.mkdtemp(prefix="clawsite-test-"))
os.environ.setdefault("CLAWSITE_REDIS_PREFIX", f"clawsite-test-{uuid.uuid4().hex[:10]}")
os.environ.setdefault("CLAWSITE_WORKER_TICK_SECONDS", "0.2")

from clawsite.settings import *  # noqa: F403

# Every test creates its personas: PBKDF2's deliberate slowness cost more than half of the
# in-process suite's time. MD5 is fine for throwaway test passwords (never for real ones).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
