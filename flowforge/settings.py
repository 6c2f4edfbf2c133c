"""All configuration, read from the environment with defaults that run on one machine.

Unset DATABASE_URL means SQLite under var/; unset CELERY_BROKER_URL means kombu's
filesystem transport under var/ (the embedded default: no servers needed).
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from flowforge.env import env_bool, env_choice, env_float, env_int, env_list, env_rate

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FLOWFORGE_VAR_DIR", BASE_DIR / "var"))


def embedded_secret_key(path: Path) -> str:
    """The embedded default's SECRET_KEY: made at random the first time, kept in `path`
    (mode 0600) so that sessions and tokens signed by one process hold in the others."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, path)  # first writer wins; the others read its key
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if os.environ.get("DATABASE_URL") and not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. A deployment (DATABASE_URL set, DEBUG off) needs its own: "
            "set SECRET_KEY to a long random string, e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    SECRET_KEY = embedded_secret_key(VAR_DIR / "secret_key")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "django_celery_beat",
    "dags",
    "runs",
    "workflows",
    "dashboard",
]

# The dashboard's login (CONTRACT section 10): anonymous pages redirect here.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "flowforge.urls"
WSGI_APPLICATION = "flowforge.wsgi.application"

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
            ],
        },
    },
]


def database_config() -> dict:
    url = os.environ.get("DATABASE_URL")
    if url:
        # Web processes keep a connection for a minute rather than open one per request
        # (a PostgreSQL backend start each); the health check drops one that broke.
        return dj_database_url.parse(
            url,
            conn_max_age=env_int("CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Several worker processes write at once: IMMEDIATE transactions, a busy timeout and
    # WAL turn "database is locked" errors into short waits (measured, see DESIGN.md).
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "flowforge.sqlite3",
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


DATABASES = {"default": database_config()}
if os.environ.get("FLOWFORGE_TEST_DB_NAME"):  # one test database per test session
    _test_db = os.environ["FLOWFORGE_TEST_DB_NAME"]
    DATABASES["default"]["TEST"] = {
        "NAME": _test_db if "DATABASE_URL" in os.environ else VAR_DIR / f"{_test_db}.sqlite3"
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# The web process serves its own static files (the admin's, the API docs'), under
# runserver and gunicorn alike, with no CDN and no separate server. Found where the apps
# keep them, so there is no collectstatic step to forget (a STATIC_ROOT, if you collect
# into one, is served too).
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "flowforge" / "static"]
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
WHITENOISE_USE_FINDERS = True

# HTTPS is the reverse proxy's: behind one that terminates TLS, set FLOWFORGE_HTTPS=true
# for secure cookies, HSTS and redirects (and let it send X-Forwarded-Proto).
FLOWFORGE_HTTPS = env_bool("FLOWFORGE_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = FLOWFORGE_HTTPS
SECURE_HSTS_SECONDS = 31_536_000 if FLOWFORGE_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = FLOWFORGE_HTTPS
if FLOWFORGE_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^health/?$", r"^metrics/?$"]  # probes and scrapes on http

# --- Celery -------------------------------------------------------------------------
# The database holds all state; the broker only carries messages. These settings make a
# message survive a worker that dies mid-task (acks_late + reject_on_worker_lost), keep a
# worker from hoarding messages it cannot start (prefetch 1), and never store results.
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")
EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("filesystem://")
FLOWFORGE_QUEUE_PREFIX = os.environ.get("FLOWFORGE_QUEUE_PREFIX", "")
FLOWFORGE_DEFAULT_QUEUE = FLOWFORGE_QUEUE_PREFIX + "default"
FLOWFORGE_DEAD_LETTER_QUEUE = FLOWFORGE_QUEUE_PREFIX + "dead_letter"

CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = FLOWFORGE_DEFAULT_QUEUE
CELERY_TASK_CREATE_MISSING_QUEUES = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("CELERY_WORKER_SEND_TASK_EVENTS", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Pool processes keep their database connection for this many tasks. Unset, Celery's Django
# fixup closes it around every task (CONN_MAX_AGE does not reach workers), and reconnecting
# cost each task ~3 ms plus a PostgreSQL backend start (bench/results/profile.md).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000) or None
# Longer than the longest task timeout (CONTRACT default 3600 s) so Redis does not
# re-deliver a message whose task is still running.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 7200, minimum=1),
}
# A publish (trigger, retry) must not hang on a broker that is down: it tries twice within
# a few seconds, then gives up and logs; the reconciler republishes from the database.
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 2)
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Without these a Redis that stops answering (host gone, process frozen) hangs a
    # publish forever. Above kombu's 1 s BRPOP timeout, so idle workers are unaffected.
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "socket_connect_timeout": env_float("CELERY_BROKER_CONNECT_TIMEOUT", 1),
        "socket_timeout": env_float("CELERY_BROKER_SOCKET_TIMEOUT", 2),
    }
if EMBEDDED_BROKER:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "polling_interval": env_float("FLOWFORGE_BROKER_POLL_SECS", 0.02, minimum=0.001),
    }
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
    for folder in ("queue", "control", "processed"):
        (BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)

# --- Engine -------------------------------------------------------------------------
# Python code of DAGs: workers resolve a relative `script:` here and import `callable:`
# modules from here (CONTRACT section 1). Every worker needs the same files at this path.
FLOWFORGE_DAGS_FOLDER = Path(os.environ.get("FLOWFORGE_DAGS_FOLDER") or BASE_DIR / "examples")
FLOWFORGE_DAGS_FOLDER = FLOWFORGE_DAGS_FOLDER.resolve()
FLOWFORGE_LEASE_SECS = env_int("FLOWFORGE_LEASE_SECS", 60, minimum=1)
FLOWFORGE_HEARTBEAT_SECS = env_float("FLOWFORGE_HEARTBEAT_SECS", 2, minimum=0.01)
FLOWFORGE_WORKER_HEARTBEAT_SECS = env_float("FLOWFORGE_WORKER_HEARTBEAT_SECS", 5, minimum=0.1)
FLOWFORGE_RECONCILE_SECS = env_int("FLOWFORGE_RECONCILE_SECS", 30, minimum=1)
# How often beat asks the scheduler (runs/scheduler.py) which cron ticks are due: a run
# is created at most this long after its tick (its logical date is the tick itself).
FLOWFORGE_SCHEDULE_SECS = env_int("FLOWFORGE_SCHEDULE_SECS", 1, minimum=1)
FLOWFORGE_REQUEUE_AFTER_SECS = env_int("FLOWFORGE_REQUEUE_AFTER_SECS", 120, minimum=1)
# How long a worker waits for an unreachable database before giving a message back.
FLOWFORGE_DB_WAIT_SECS = env_float("FLOWFORGE_DB_WAIT_SECS", 120)
# On SIGTERM a worker lets running attempts finish for this long, then hands the rest back.
FLOWFORGE_SHUTDOWN_GRACE_SECS = env_float("FLOWFORGE_SHUTDOWN_GRACE_SECS", 30)
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = FLOWFORGE_SHUTDOWN_GRACE_SECS

# --- API ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes anonymous requests a 401, not a 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["flowforge.permissions.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "flowforge.pagination.Pagination",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "flowforge.parsers.JSONParser",
        "flowforge.parsers.YAMLParser",
        "flowforge.parsers.TextYAMLParser",
        "flowforge.parsers.XYAMLParser",
    ],
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.UserRateThrottle",
        "rest_framework.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_rate("FLOWFORGE_THROTTLE_USER", "6000/min"),
        "anon": env_rate("FLOWFORGE_THROTTLE_ANON", "600/min"),
    },
    "EXCEPTION_HANDLER": "flowforge.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "FlowForge API",
    "DESCRIPTION": "DAGs, runs, task instances, dead letters, jobs and workflows.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RunStateEnum": "runs.states.RunState",
        "TaskStateEnum": "runs.states.TaskState",
    },
}
# Throttle counts live here; point CACHE_URL-less deployments with several web processes
# at Redis with DJANGO_CACHE_REDIS_URL so the limits hold across them.
CACHES = {
    "default": (
        {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": os.environ["DJANGO_CACHE_REDIS_URL"],
        }
        if os.environ.get("DJANGO_CACHE_REDIS_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}
APPEND_SLASH = False  # API paths answer with and without a trailing slash, no redirects

LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
# json: one JSON object a line (what log shippers read); text: lines for a person.
LOG_FORMAT = env_choice("LOG_FORMAT", "json", ("json", "text"))
# A worker on a host without the web process serves its own /metrics on this port
# (CONTRACT section 11); 0: none (its metrics reach the web's scrape instead).
FLOWFORGE_WORKER_METRICS_PORT = env_int("FLOWFORGE_WORKER_METRICS_PORT", 0)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "flowforge.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Naming it takes off the handlers Django's defaults give it (prose with DEBUG, mail
        # to ADMINS, which we leave unset), so Django's lines, runserver's request lines
        # among them, reach the root's handler. Its DEBUG lines stay out, as before.
        "django": {"level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL},
        "django.db.backends": {"level": "INFO"},
    },
}
