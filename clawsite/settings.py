"""ClawSite settings: twelve-factor, every value from the environment with a default that runs
on one machine with no configuration at all (see README "Configuration")."""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be one of 1/true/yes/on or 0/false/no/off, not {raw!r}")


def envint(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def envfloat(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(os.environ.get("CLAWSITE_DATA_DIR", BASE_DIR / "data")).resolve()
# Private to the service's user: the database, the sessions in it, the secret key, workspaces.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def _secret_key() -> str:
    """The environment's key, or one generated once and kept in the data folder."""
    if key := os.environ.get("DJANGO_SECRET_KEY"):
        return key
    key_file = DATA_DIR / "secret_key"
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = envbool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")

# --- HTTPS in production (README "Security"): with all of these set, check --deploy is clean ---
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", False)
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = envbool("DJANGO_SSL_REDIRECT", False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # a load balancer's probe may come over plain HTTP
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if envbool("DJANGO_TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "daphne",
    # Before "channels": its runworker command overrides Channels' own.
    "tasks_app",
    "tools_app",
    "tasks_app.admin_site.ClawSiteAdminConfig",  # the admin, with its statistics pages
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
]

MIDDLEWARE = [
    "tasks_app.api.middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "tasks_app.middleware.AsyncWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: it answers the lock-out
]

# The pages' Content Security Policy (Django's own): scripts, styles and connections from this
# origin only (websockets included), inline ones only with the response's nonce; no framing.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

ROOT_URLCONF = "clawsite.urls"
ASGI_APPLICATION = "clawsite.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------------------
# Request threads under daphne are short-lived, so their connections are not kept (CONN_MAX_AGE=0,
# and a pool on PostgreSQL). The hot paths (API, worker) run their queries on the process's own
# long-lived database threads (tasks_app.db), whose connections stay open.
SQLITE_PATH = DATA_DIR / "clawsite.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{SQLITE_PATH}"), conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": (
            "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=30000;"
            "PRAGMA cache_size=-20000;PRAGMA temp_store=MEMORY;"
        ),
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_clawsite.sqlite3")}
    # Made private before SQLite first opens it (its -wal and -shm files take its mode).
    if DATABASES["default"]["NAME"] == str(SQLITE_PATH) and not SQLITE_PATH.exists():
        os.close(os.open(SQLITE_PATH, os.O_WRONLY | os.O_CREAT, 0o600))
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 2, "max_size": 20}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
CLAWSITE_DB_THREADS = envint(
    "CLAWSITE_DB_THREADS", 1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 4
)

# --- Redis: channel layer, cache, sessions --------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Every key ClawSite writes starts with this, so several installs (or test runs) share one Redis.
REDIS_PREFIX = os.environ.get("CLAWSITE_REDIS_PREFIX", "clawsite")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 times reads out after 5 s, exactly the layer's blocking receive: without
            # socket_timeout=None an idle worker dies after about 5 s.
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": f"{REDIS_PREFIX}:asgi",
            "capacity": 1000,
            "expiry": 60,
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_PREFIX,
        "TIMEOUT": 3600,
        "OPTIONS": {
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
            # JSON, not pickle: a value planted in Redis must not be code run on reading it.
            "SERIALIZER": "django_redis.serializers.json.JSONSerializer",
        },
    }
}
# Sessions in Redis with the database behind them: a signed-in user survives a Redis restart.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- django.tasks: @task functions of any installed app run on ClawSite's workers ------------------
# QUEUES empty: any safe queue name (CLAWSITE_QUEUES lists the allowed ones).
TASKS = {
    "default": {
        "BACKEND": "tasks_app.backends.ClawSiteBackend",
        "QUEUES": envlist("CLAWSITE_QUEUES"),
    }
}

# --- Auth ------------------------------------------------------------------------------------------
LOGIN_URL = "login"
# Login throttling (django-axes): after CLAWSITE_LOGIN_FAILURES failed sign-ins of one username
# from one address, that pair is locked out for CLAWSITE_LOGIN_COOLOFF_MINUTES (429).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("CLAWSITE_LOGIN_FAILURES", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envfloat("CLAWSITE_LOGIN_COOLOFF_MINUTES", 15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
LOGIN_REDIRECT_URL = "task-list"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# --- I18N, static ----------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True

# --- ClawSite --------------------------------------------------------------------------------------
CLAWSITE_MAX_BODY_BYTES = envint("CLAWSITE_MAX_BODY_BYTES", 10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CLAWSITE_MAX_BODY_BYTES
# A tool result larger than this (as JSON) fails its task with invalid_result.
CLAWSITE_MAX_RESULT_BYTES = envint("CLAWSITE_MAX_RESULT_BYTES", 10 * 1024 * 1024)
# Websocket frames carry results up to about this size; a larger one is left out of the frame
# (``result_omitted``: fetch the task's ``url``), so watchers are not sent megabytes per change.
CLAWSITE_WS_MAX_RESULT_BYTES = envint("CLAWSITE_WS_MAX_RESULT_BYTES", 64 * 1024)
CLAWSITE_WORKSPACE_ROOT = Path(
    os.environ.get("CLAWSITE_WORKSPACE_ROOT", DATA_DIR / "workspaces")
).resolve()
# Tasks a worker process runs at once, and so the size of its claim batch: one transaction
# claims up to this many. The contract's default is 8; with many short I/O-bound tasks a higher
# value pays (one database round trip per batch: the bench runs its workers at 64).
CLAWSITE_WORKER_CONCURRENCY = envint("CLAWSITE_WORKER_CONCURRENCY", 8)
# The queues a worker claims from (`runworker tasks --queues a,b` overrides); empty: every queue.
CLAWSITE_WORKER_QUEUES = envlist("CLAWSITE_WORKER_QUEUES")
# The queue names tasks may use; empty: any safe name (letters, digits, _ and -, up to 64).
CLAWSITE_QUEUES = envlist("CLAWSITE_QUEUES")
# Threads of a worker process for the sync functions of Django tasks (async ones run on its loop).
CLAWSITE_WORKER_THREADS = envint("CLAWSITE_WORKER_THREADS", 4)
# The timeout of a Django task whose @task gives none (seconds per attempt).
CLAWSITE_DJANGO_TASK_TIMEOUT = envfloat("CLAWSITE_DJANGO_TASK_TIMEOUT", 3600.0)
CLAWSITE_WORKER_TICK_SECONDS = envfloat("CLAWSITE_WORKER_TICK_SECONDS", 1.0)
CLAWSITE_LEASE_SECONDS = envfloat("CLAWSITE_LEASE_SECONDS", 30.0)
CLAWSITE_WORKER_GRACE_SECONDS = envfloat("CLAWSITE_WORKER_GRACE_SECONDS", 20.0)
# Retries of retryable failures wait base * 2**(attempt-1) seconds (with jitter), up to the max.
CLAWSITE_RETRY_BASE_SECONDS = envfloat("CLAWSITE_RETRY_BASE_SECONDS", 1.0)
CLAWSITE_RETRY_MAX_SECONDS = envfloat("CLAWSITE_RETRY_MAX_SECONDS", 300.0)
# prune_tasks removes finished tasks older than this (0 keeps them forever).
CLAWSITE_RESULT_RETENTION_DAYS = envfloat("CLAWSITE_RESULT_RETENTION_DAYS", 30.0)
# Extra modules whose import registers tools (the kill tests' tools live in tests/, not here).
CLAWSITE_EXTRA_TOOL_MODULES = envlist("CLAWSITE_EXTRA_TOOL_MODULES")
CLAWSITE_WORKER_CHANNEL = "tasks"
CLAWSITE_COMMAND_ALLOWLIST = envlist("CLAWSITE_COMMAND_ALLOWLIST")
CLAWSITE_PYTHON_ENABLED = envbool("CLAWSITE_PYTHON_ENABLED", False)
CLAWSITE_HTTP_ALLOW_PRIVATE = envbool("CLAWSITE_HTTP_ALLOW_PRIVATE", False)
CLAWSITE_LLM_BASE_URL = os.environ.get("CLAWSITE_LLM_BASE_URL", "")
CLAWSITE_LLM_API_KEY = os.environ.get("CLAWSITE_LLM_API_KEY", "")
CLAWSITE_LLM_MODEL = os.environ.get("CLAWSITE_LLM_MODEL", "")
# When set, /metrics and /healthz's details need "Authorization: Bearer <this>" or staff.
CLAWSITE_METRICS_TOKEN = os.environ.get("CLAWSITE_METRICS_TOKEN", "")
# Open websockets check their credential again this often (and at once on a logout, a token
# revoked, a user changed: tasks_app.ws_access).
CLAWSITE_WS_RECHECK_SECONDS = envfloat("CLAWSITE_WS_RECHECK_SECONDS", 5.0)
# run_command and run_python run in a bubblewrap sandbox (tools_app.sandbox; README "Security").
# "none" is the opt-out for hosts without namespaces: unconfined, with the rlimits only.
CLAWSITE_SANDBOX = os.environ.get("CLAWSITE_SANDBOX", "bwrap")
CLAWSITE_BWRAP = os.environ.get("CLAWSITE_BWRAP", "bwrap")
CLAWSITE_COMMAND_NETWORK = envbool("CLAWSITE_COMMAND_NETWORK", False)
CLAWSITE_PYTHON_NETWORK = envbool("CLAWSITE_PYTHON_NETWORK", False)
# Processes (per sandbox) and open files (per process) a program may have.
CLAWSITE_SANDBOX_MAX_PROCESSES = envint("CLAWSITE_SANDBOX_MAX_PROCESSES", 64)
CLAWSITE_SANDBOX_MAX_OPEN_FILES = envint("CLAWSITE_SANDBOX_MAX_OPEN_FILES", 256)
# Address space and largest file written (CPU seconds come from the timeout).
CLAWSITE_COMMAND_MEMORY_MB = envint("CLAWSITE_COMMAND_MEMORY_MB", 1024)
CLAWSITE_COMMAND_MAX_FILE_MB = envint("CLAWSITE_COMMAND_MAX_FILE_MB", 64)
CLAWSITE_PYTHON_MEMORY_MB = envint("CLAWSITE_PYTHON_MEMORY_MB", 512)
CLAWSITE_PYTHON_MAX_FILE_MB = envint("CLAWSITE_PYTHON_MAX_FILE_MB", 16)
# The interpreter run_python uses inside the sandbox: the system's, not the worker's venv.
CLAWSITE_PYTHON_EXECUTABLE = os.environ.get("CLAWSITE_PYTHON_EXECUTABLE", "/usr/bin/python3")
# Tool cache (tools_app.cache): seconds an answer is kept, per tool (0 turns a tool's cache off).
CLAWSITE_CACHE_ENABLED = envbool("CLAWSITE_CACHE_ENABLED", True)
CLAWSITE_CACHE_TTL = {
    "read_file": envint("CLAWSITE_CACHE_TTL_READ_FILE", 300),
    "list_directory": envint("CLAWSITE_CACHE_TTL_LIST_DIRECTORY", 300),
    "file_info": envint("CLAWSITE_CACHE_TTL_FILE_INFO", 300),
    "search_files": envint("CLAWSITE_CACHE_TTL_SEARCH_FILES", 600),
    "hash_file": envint("CLAWSITE_CACHE_TTL_HASH_FILE", 3600),
}
# A read_file answer is cached only from this many bytes on. A Redis hit measured slower than a
# read from the page cache at every size up to read_file's 10 MiB cap (scripts/measure_cache.py;
# README "Tools"), so the default is above the cap: off. Lower it for slow (network) disks.
CLAWSITE_CACHE_READ_FILE_MIN_BYTES = envint("CLAWSITE_CACHE_READ_FILE_MIN_BYTES", 16 * 1024 * 1024)
# An answer that depends on something changed this recently is not cached: timestamps are coarse.
CLAWSITE_CACHE_RACY_SECONDS = envfloat("CLAWSITE_CACHE_RACY_SECONDS", 2.0)

# CLAWSITE_LOG_FORMAT: "plain" (default) or "json" (one object per line); both carry task_id.
CLAWSITE_LOG_FORMAT = os.environ.get("CLAWSITE_LOG_FORMAT", "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"task_id": {"()": "tasks_app.logs.TaskIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [task %(task_id)s] %(message)s"},
        "json": {"()": "tasks_app.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if CLAWSITE_LOG_FORMAT == "json" else "plain",
            "filters": ["task_id"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("CLAWSITE_LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's task signals log each task's start and end at INFO: ClawSite's level rules.
        "django.tasks": {"level": os.environ.get("CLAWSITE_LOG_LEVEL", "INFO")},
        "django.channels.server": {"level": "WARNING"},
    },
}

# --- Flow control (API.md "Flow control"; tasks_app.flow, tasks_app.limits) ---------------------------
# Requests per user, as N/s, N/m or N/h (e.g. 600/m); empty: no limit. Over it: 429 rate_limited.
CLAWSITE_API_RATE = os.environ.get("CLAWSITE_API_RATE", "")
# Queued tasks a submit may leave, per user and in all (0: no limit). Over either: 429 queue_full.
CLAWSITE_MAX_QUEUED_PER_USER = envint("CLAWSITE_MAX_QUEUED_PER_USER", 0)
CLAWSITE_MAX_QUEUED = envint("CLAWSITE_MAX_QUEUED", 0)
# Limits on running work, seeded into the admin's Limit rows (staff edit them there), e.g.
# {"tool:llm_chat": {"concurrency": 5, "rate": "40/m"}, "queue:long": {"concurrency": 2}}.
CLAWSITE_LIMITS = os.environ.get("CLAWSITE_LIMITS", "")
# A worker past either stops claiming, finishes (or hands back) its tasks as on SIGTERM, and
# replaces itself with a fresh process under the same command and pid (0: no limit).
CLAWSITE_WORKER_MAX_TASKS = envint("CLAWSITE_WORKER_MAX_TASKS", 0)
CLAWSITE_WORKER_MAX_MEMORY_MB = envint("CLAWSITE_WORKER_MAX_MEMORY_MB", 0)
# Schedules: how often each worker looks for due ones, and how late a run of a "skip" schedule
# may be before it is skipped.
CLAWSITE_SCHEDULE_CHECK_SECONDS = envfloat("CLAWSITE_SCHEDULE_CHECK_SECONDS", 1.0)
CLAWSITE_SCHEDULE_GRACE_SECONDS = envfloat("CLAWSITE_SCHEDULE_GRACE_SECONDS", 60.0)
# llm_chat's endpoint pool, a JSON list of {"name", "base_url", "api_key"?, "model"?, "weight"?,
# "concurrency"?, "rate"?}; empty: CLAWSITE_LLM_BASE_URL alone, as a pool of one.
CLAWSITE_LLM_ENDPOINTS = os.environ.get("CLAWSITE_LLM_ENDPOINTS", "")
# Circuit breakers (LLM endpoints, http_fetch hosts): consecutive failures that open one, and
# the seconds it stays open before one probe call may test it.
CLAWSITE_BREAKER_FAILURES = envint("CLAWSITE_BREAKER_FAILURES", 5)
CLAWSITE_BREAKER_COOLDOWN_SECONDS = envfloat("CLAWSITE_BREAKER_COOLDOWN_SECONDS", 60.0)
# How often a worker rereads whether any limit exists (a change of a limit's values counts at once).
CLAWSITE_LIMITS_REFRESH_SECONDS = envfloat("CLAWSITE_LIMITS_REFRESH_SECONDS", 2.0)
