"""Settings for CodeAct Web: every value comes from the environment.

The README lists each variable with its default. There is one settings file
for development, tests and production; behaviour differs only by values.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from codeact_web.database import process_name, process_role
from codeact_web.env import (
    env_action_format,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_models,
    env_networks,
    env_ports,
    env_secret,
    env_str,
    env_url_with_password,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CODEACT_VAR_DIR", str(BASE_DIR / "var")))

# CODEACT_PROFILE=production (the Compose deployment sets it) changes defaults only:
# those of a site behind an HTTPS reverse proxy, under which `manage.py check --deploy`
# reports nothing. Every value below can still be set on its own.
CODEACT_PROFILE = env_str("CODEACT_PROFILE", "development")
if CODEACT_PROFILE not in ("development", "production"):
    raise ImproperlyConfigured("CODEACT_PROFILE must be development or production")
PRODUCTION = CODEACT_PROFILE == "production"

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY", default_file=VAR_DIR / "secret_key")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set: set SECRET_KEY or SECRET_KEY_FILE, or run scripts/bootstrap "
        f"which writes one to {VAR_DIR / 'secret_key'}"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "health_check",
    "chat",
    "review",
    "evals",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "codeact_web.urls"
ASGI_APPLICATION = "codeact_web.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", "postgres://codeact:codeact@127.0.0.1:5432/codeact"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
# A password kept out of the URL: DATABASE_PASSWORD or a file in DATABASE_PASSWORD_FILE
# (a Docker secret, say).
if _db_password := env_secret("DATABASE_PASSWORD"):
    DATABASES["default"]["PASSWORD"] = _db_password
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url_with_password(
    env_str("REDIS_URL", "redis://127.0.0.1:6379/0"), env_secret("REDIS_PASSWORD")
)
# Redis pub/sub is shared by every database number, so the prefix is what keeps
# two deployments (or a test run beside `make run`) apart on one server.
CHANNEL_PREFIX = env_str("CODEACT_CHANNEL_PREFIX", "codeact")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_PREFIX},
    }
}

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "codeact")
# Celery's Django fixup closes every database connection before and after each
# task unless this is set; a new PostgreSQL connection then costs every turn
# 10-25 ms before its first token. Connections are kept (DATABASE_CONN_MAX_AGE)
# and health-checked at each task start instead (chat.tasks).
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000, minimum=0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# JSON logs: Celery must leave the root logger to LOGGING (below) instead of its own format.
CELERY_WORKER_HIJACK_ROOT_LOGGER = env_str("CODEACT_LOG_FORMAT", "plain") != "json"
# `make run` starts this many worker processes, each running up to
# CODEACT_WORKER_CONCURRENCY turns in threads. A turn is mostly waiting (model,
# kernel, database), but its Python runs under one process's GIL: one process
# per core lets a busy machine use all of them.
CODEACT_WORKER_PROCESSES = env_int(
    "CODEACT_WORKER_PROCESSES", min(4, len(os.sched_getaffinity(0))), minimum=1
)
CODEACT_WORKER_CONCURRENCY = env_int("CODEACT_WORKER_CONCURRENCY", 32, minimum=1)

# --- Database connections: one bounded pool per process (README, "Database connections")
# Connections are named codeact-<process> (web, worker2, beat, ...) in pg_stat_activity.
CODEACT_PROCESS = env_str("CODEACT_PROCESS", "") or process_name()
# A worker thread keeps its connection for a whole turn, so a worker's pool has room
# for every thread; the web process's threads hold one only for a request or a frame.
CODEACT_DB_POOL_SIZE = env_int(
    "CODEACT_DB_POOL_SIZE",
    CODEACT_WORKER_CONCURRENCY + 4 if process_role() == "worker" else 10,
    minimum=0,
)
# How long a request waits for a free connection before it is answered 503.
CODEACT_DB_POOL_TIMEOUT = env_float("CODEACT_DB_POOL_TIMEOUT", 10.0, minimum=0.1)
_db_options = DATABASES["default"].setdefault("OPTIONS", {})
_db_options["application_name"] = f"codeact-{CODEACT_PROCESS}"[:63]
if CODEACT_DB_POOL_SIZE:
    _db_options["pool"] = {
        "min_size": 1,
        "max_size": CODEACT_DB_POOL_SIZE,
        "timeout": CODEACT_DB_POOL_TIMEOUT,
        "max_idle": 60.0,  # idle connections above min_size close after a minute
    }
    # Django then has the pool check a connection as it leaves it: after a database
    # restart every idle one is dead, and each would otherwise fail one request.
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # Closing a pooled connection hands it back: Django must not keep it per thread,
    # and Celery returns a task's connection to the pool when the task ends.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    CELERY_DB_REUSE_MAX = 0
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{CHANNEL_PREFIX}:"}
CELERY_BEAT_SCHEDULE = {
    "sweep-turns": {
        "task": "chat.tasks.sweep_turns",
        "schedule": env_float("CODEACT_SWEEP_INTERVAL", 10.0, minimum=1.0),
    },
    "maintain-sandboxes": {
        "task": "chat.tasks.maintain_sandboxes",
        "schedule": env_float("CODEACT_POOL_INTERVAL", 15.0, minimum=1.0),
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
if PRODUCTION:
    # Names carry a hash of the content (collected when the image is built), so the
    # reverse proxy and browsers may keep them for years.
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", PRODUCTION)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Production behind an HTTPS reverse proxy (README, "Production settings").
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
# Health checks and Prometheus's scrapes are plain HTTP from inside the container or
# the cluster's network.
SECURE_REDIRECT_EXEMPT = [r"^health/", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
# The header the proxy sets to "https" for a TLS request, e.g. X-Forwarded-Proto. Only
# set it when a proxy always sets (or strips) it: a client could send it otherwise.
_proxy_ssl_header = env_str("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto" if PRODUCTION else "")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
# Addresses (or networks) of the reverse proxies: from them alone X-Forwarded-For
# is believed, so the audit trail records the client, not the proxy.
CODEACT_TRUSTED_PROXIES = env_list("CODEACT_TRUSTED_PROXIES", "")
# Prometheus metrics at /metrics (codeact_web/metrics.py) go to clients in these
# networks (their address as found behind CODEACT_TRUSTED_PROXIES), or to a request
# with `Authorization: Bearer <CODEACT_METRICS_TOKEN>`; anyone else is refused (403).
CODEACT_METRICS_ALLOW = env_networks("CODEACT_METRICS_ALLOW", "127.0.0.1/32,::1/128")
# Empty: no token is accepted, only the networks above.
CODEACT_METRICS_TOKEN = env_secret("CODEACT_METRICS_TOKEN")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Model output is rendered on the server and sanitized; the CSP is the second
# wall: no inline script without the nonce, no image from outside the site.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:", "blob:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

# CODEACT_LOG_FORMAT=json: one JSON object per line (time, level, logger, process,
# message, and any extra fields), for a log collector; plain text otherwise.
CODEACT_LOG_FORMAT = env_str("CODEACT_LOG_FORMAT", "plain")
if CODEACT_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("CODEACT_LOG_FORMAT must be plain or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "timestamp": "time",  # ISO 8601, UTC
            "rename_fields": {"levelname": "level", "name": "logger"},
            "static_fields": {"process": process_name()},
        }
        if CODEACT_LOG_FORMAT == "json"
        else {"format": "%(message)s"},  # not used: the library need not be importable
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": CODEACT_LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # django-axes: lockouts, not every login
        # A failed check is in the answer; logging its traceback every probe adds nothing.
        "health_check": {"level": "ERROR"},
        # One line per model request and health probe, each naming the endpoint's URL.
        "httpx2": {"level": "WARNING"},
    },
}

# --- CodeAct ---------------------------------------------------------------

# When no model URL is configured, `make run` serves the bundled SmolLM2 model
# with llama.cpp on this port and the app talks to it.
CODEACT_BUNDLED_MODEL_PORT = env_int("CODEACT_BUNDLED_MODEL_PORT", 8081, minimum=1)
_model_url = env_str("CODEACT_MODEL_URL", "")
CODEACT_BUNDLED_MODEL = not (
    _model_url or env_str("CODEACT_MODELS") or env_str("CODEACT_MODELS_FILE")
)
CODEACT_MAX_EXECUTIONS = env_int("CODEACT_MAX_EXECUTIONS", 5, minimum=1)
# How the model writes the code it wants to run (chat.agent.formats): `execute`
# (CodeAct's <execute> tags), `fence` (the first ```python block, as general chat
# models write code; the bundled SmolLM2 does) or `tool` (OpenAI function calling).
# The single model's format, and the default of CODEACT_MODELS entries without one.
CODEACT_MODEL_ACTION_FORMAT = env_action_format(
    "CODEACT_MODEL_ACTION_FORMAT", "fence" if CODEACT_BUNDLED_MODEL else "execute"
)
_model_defaults: dict[str, object] = {
    "api_key": "not-needed",
    "temperature": env_float("CODEACT_MODEL_TEMPERATURE", 0.2, minimum=0.0),
    "max_tokens": env_int("CODEACT_MODEL_MAX_TOKENS", 1024, minimum=1),
    "max_executions": CODEACT_MAX_EXECUTIONS,
    "action_format": CODEACT_MODEL_ACTION_FORMAT,
}
# Several endpoints: CODEACT_MODELS (or CODEACT_MODELS_FILE) holds a JSON list, e.g.
# [{"key": "qwen", "label": "Qwen 2.5 7B", "base_url": "http://vllm:8000/v1",
#   "model": "Qwen/Qwen2.5-7B-Instruct", "api_key_env": "VLLM_KEY", "action_format": "tool"}]
# Otherwise one model from the CODEACT_MODEL_* variables (or the bundled one).
CODEACT_MODELS = env_models("CODEACT_MODELS", _model_defaults) or [
    _model_defaults
    | {
        "key": "default",
        "label": env_str(
            "CODEACT_MODEL_LABEL", "SmolLM2 135M (bundled)" if CODEACT_BUNDLED_MODEL else ""
        )
        or env_str("CODEACT_MODEL_NAME", "default"),
        "base_url": _model_url or f"http://127.0.0.1:{CODEACT_BUNDLED_MODEL_PORT}/v1",
        "model": env_str("CODEACT_MODEL_NAME", "smollm2-135m-instruct"),
        "api_key": env_secret("CODEACT_MODEL_API_KEY", "not-needed"),
    }
]
CODEACT_MODEL_CONNECT_TIMEOUT = env_float("CODEACT_MODEL_CONNECT_TIMEOUT", 5.0, minimum=0.1)
# Longest silence tolerated inside a streaming reply before the turn fails.
CODEACT_MODEL_READ_TIMEOUT = env_float("CODEACT_MODEL_READ_TIMEOUT", 60.0, minimum=0.1)
CODEACT_MODEL_RETRIES = env_int("CODEACT_MODEL_RETRIES", 2, minimum=0)
# Readiness (codeact_web/health.py): each worker process probes its Docker engine and
# the model endpoints this often and reports to Redis; a report is fresh for three
# intervals. Every probe of a dependency gives up after CODEACT_HEALTH_TIMEOUT.
CODEACT_HEALTH_INTERVAL = env_float("CODEACT_HEALTH_INTERVAL", 15.0, minimum=0.1)
CODEACT_HEALTH_TIMEOUT = env_float("CODEACT_HEALTH_TIMEOUT", 3.0, minimum=0.1)
CODEACT_TURN_LEASE_SECONDS = env_int("CODEACT_TURN_LEASE_SECONDS", 30, minimum=2)
# A turn whose thread shows no sign of life this long (every wait of a turn is
# bounded well below it) loses its lease renewal, and the sweeper closes it.
CODEACT_TURN_STALL_SECONDS = env_float("CODEACT_TURN_STALL_SECONDS", 300.0, minimum=0.1)
CODEACT_QUEUED_TURN_RETRY_SECONDS = env_int("CODEACT_QUEUED_TURN_RETRY_SECONDS", 30, minimum=1)
# The most queued turns one sweep sends again (the rest wait for the next sweep).
CODEACT_SWEEP_REQUEUE_BATCH = env_int("CODEACT_SWEEP_REQUEUE_BATCH", 200, minimum=1)
CODEACT_FLUSH_INTERVAL = env_float("CODEACT_FLUSH_INTERVAL", 0.5, minimum=0.05)
# Tokens arriving faster than this share one websocket frame (the first token of a
# reply goes out at once). 50 ms is 20 updates a second: smooth to the eye, and
# a fast model or a busy server costs frames per interval, not per token.
CODEACT_DELTA_INTERVAL = env_float("CODEACT_DELTA_INTERVAL", 0.05, minimum=0.0)
CODEACT_MAX_MESSAGE_CHARS = env_int("CODEACT_MAX_MESSAGE_CHARS", 32_000, minimum=1)
CODEACT_MAX_FRAME_BYTES = env_int("CODEACT_MAX_FRAME_BYTES", 256 * 1024, minimum=1024)
# A frame the server sends that is larger than this (a resync after a big cell) goes
# out in `part` frames. Daphne's websocket library refuses to send a message over
# 1 MiB and drops the socket instead, so this stays well under that.
CODEACT_SEND_FRAME_BYTES = env_int("CODEACT_SEND_FRAME_BYTES", 512 * 1024, minimum=1024)
CODEACT_HISTORY_MESSAGES = env_int("CODEACT_HISTORY_MESSAGES", 60, minimum=1)
# Live execution output is coalesced into one frame per this interval.
CODEACT_OUTPUT_INTERVAL = env_float("CODEACT_OUTPUT_INTERVAL", 0.05, minimum=0.01)

# --- Files: uploads and files the code writes, kept in PostgreSQL ------------------
CODEACT_UPLOAD_MAX_MB = env_int("CODEACT_UPLOAD_MAX_MB", 50, minimum=1)
CODEACT_UPLOADS_PER_REQUEST = env_int("CODEACT_UPLOADS_PER_REQUEST", 10, minimum=1)
CODEACT_FILES_PER_CONVERSATION = env_int("CODEACT_FILES_PER_CONVERSATION", 50, minimum=1)
CODEACT_FILES_MB_PER_CONVERSATION = env_int("CODEACT_FILES_MB_PER_CONVERSATION", 200, minimum=1)
# Files the code writes are kept (downloadable, restored into a new sandbox) up to this size.
CODEACT_CAPTURE_MAX_MB = env_int("CODEACT_CAPTURE_MAX_MB", 20, minimum=1)

# --- Request bodies (codeact_web/body_limit.py): refused before they are buffered -----
# Daphne holds a whole accepted body in memory, so every route has a small limit and
# only the upload route a large one: what one request can usefully store (its files,
# capped by the conversation's room) plus 1 MB for the multipart framing.
CODEACT_MAX_BODY_BYTES = env_int("CODEACT_MAX_BODY_KB", 1024, minimum=1) * 1024
CODEACT_MAX_UPLOAD_BODY_BYTES = env_int(
    "CODEACT_MAX_UPLOAD_BODY_MB",
    min(CODEACT_UPLOAD_MAX_MB * CODEACT_UPLOADS_PER_REQUEST, CODEACT_FILES_MB_PER_CONVERSATION) + 1,
    minimum=1,
) * (1 << 20)

# --- Sandboxes (DESIGN.md §4): every limit a setting, safe by default ------------
MiB = 1 << 20
# Where sandboxes run (sandbox/backend.py): docker -- containers on one or more Docker
# engines; kubernetes -- one Pod per sandbox in CODEACT_K8S_NAMESPACE.
CODEACT_SANDBOX_BACKEND = env_str("CODEACT_SANDBOX_BACKEND", "docker").strip().lower()
if CODEACT_SANDBOX_BACKEND not in ("docker", "kubernetes"):
    raise ImproperlyConfigured("CODEACT_SANDBOX_BACKEND must be docker or kubernetes")
CODEACT_DOCKER_URL = env_str("CODEACT_DOCKER_URL", "")  # empty: DOCKER_HOST or the local socket
# Several engines (README "Several Docker hosts"): their URLs, comma-separated; a new
# sandbox goes to the one with the most room. Empty: CODEACT_DOCKER_URL alone. The
# first is the one web-access sandboxes use (the egress proxy runs beside it).
CODEACT_DOCKER_HOSTS = env_list("CODEACT_DOCKER_HOSTS", "")
if _bad_hosts := [
    h for h in CODEACT_DOCKER_HOSTS if not h.startswith(("unix://", "tcp://", "ssh://", "https://"))
]:
    raise ImproperlyConfigured(
        f"CODEACT_DOCKER_HOSTS: {', '.join(_bad_hosts)} is not an engine URL "
        "(unix://path, tcp://host:port, https://host:port or ssh://user@host)"
    )
# TLS client certificates for tcp:// engines: ca.pem, cert.pem and key.pem in
# <dir>/<host name>/ for one engine, or in <dir>/ itself for all of them.
CODEACT_DOCKER_TLS_DIR = env_str("CODEACT_DOCKER_TLS_DIR", "")
# An engine that does not answer for this long is marked down: no new sandbox goes
# there, and its conversations get a new sandbox elsewhere on their next cell.
CODEACT_DOCKER_HOST_TIMEOUT = env_float("CODEACT_DOCKER_HOST_TIMEOUT", 5.0, minimum=0.5)
# Kubernetes (deploy/helm/codeact-web): the namespace sandbox pods live in, their
# RuntimeClass ("" none; "gvisor" in the chart's production values), the egress
# proxy URL web-access pods get ("" no web access), and the kubeconfig ("" in a pod:
# its service account; elsewhere ~/.kube/config or KUBECONFIG).
CODEACT_K8S_NAMESPACE = env_str("CODEACT_K8S_NAMESPACE", "codeact-sandboxes")
CODEACT_K8S_RUNTIME_CLASS = env_str("CODEACT_K8S_RUNTIME_CLASS", "")
CODEACT_K8S_EGRESS_PROXY = env_str("CODEACT_K8S_EGRESS_PROXY", "")
CODEACT_KUBECONFIG = env_str("CODEACT_KUBECONFIG", "")
# empty: the image built from sandbox/image (its tag is a hash of that folder)
CODEACT_SANDBOX_IMAGE = env_str("CODEACT_SANDBOX_IMAGE", "")
# auto: gVisor (runsc) wherever the engine has it, else runc with a warning;
# runsc or runc: that runtime (see sandbox/runtime.py).
CODEACT_SANDBOX_RUNTIME = env_str("CODEACT_SANDBOX_RUNTIME", "auto").strip().lower() or "auto"
if CODEACT_SANDBOX_RUNTIME not in ("auto", "runsc", "runc"):
    raise ImproperlyConfigured("CODEACT_SANDBOX_RUNTIME must be auto, runsc or runc")
CODEACT_SANDBOX_PRELOAD = env_list("CODEACT_SANDBOX_PRELOAD", "numpy,pandas,matplotlib")
_PRELOADABLE = {"numpy", "pandas", "matplotlib", "scipy", "seaborn", "sklearn", "sympy"}
if _unknown := set(CODEACT_SANDBOX_PRELOAD) - _PRELOADABLE:
    raise ImproperlyConfigured(
        f"CODEACT_SANDBOX_PRELOAD: cannot preload {', '.join(sorted(_unknown))}; "
        f"choose from {', '.join(sorted(_PRELOADABLE))}"
    )
CODEACT_SANDBOX_LIMITS = {
    "memory_bytes": env_int("CODEACT_SANDBOX_MEMORY_MB", 1024, minimum=64) * MiB,
    "cpus": env_float("CODEACT_SANDBOX_CPUS", 1.0, minimum=0.1),
    "pids": env_int("CODEACT_SANDBOX_PIDS", 256, minimum=16),
    "nofile": env_int("CODEACT_SANDBOX_NOFILE", 1024, minimum=64),
    "fsize_bytes": env_int("CODEACT_SANDBOX_FILE_SIZE_MB", 512, minimum=1) * MiB,
    "tmp_bytes": env_int("CODEACT_SANDBOX_TMP_MB", 256, minimum=16) * MiB,
    "workspace_bytes": env_int("CODEACT_SANDBOX_WORKSPACE_MB", 512, minimum=16) * MiB,
    "inodes": env_int("CODEACT_SANDBOX_INODES", 50_000, minimum=1000),
    "cell_timeout": env_float("CODEACT_CELL_TIMEOUT", 120.0, minimum=1.0),
    "interrupt_grace": env_float("CODEACT_INTERRUPT_GRACE", 5.0, minimum=0.5),
    "stream_bytes": env_int("CODEACT_CELL_STREAM_BYTES", 1 * MiB, minimum=1024),
    "display_items": env_int("CODEACT_CELL_DISPLAY_ITEMS", 50, minimum=1),
    "image_bytes": env_int("CODEACT_CELL_IMAGE_BYTES", 5 * MiB, minimum=1024),
    # Display values other than images (text, HTML, JSON...) of one item, and one
    # error's text; and all that one cell displays, images included.
    "display_item_bytes": env_int("CODEACT_CELL_DISPLAY_ITEM_BYTES", 1 * MiB, minimum=1024),
    "display_bytes": env_int("CODEACT_CELL_DISPLAY_BYTES", 10 * MiB, minimum=4096),
    "file_bytes": env_int("CODEACT_SANDBOX_MAX_FILE_MB", 100, minimum=1) * MiB,
    "start_timeout": env_float("CODEACT_SANDBOX_START_TIMEOUT", 60.0, minimum=5.0),
    "preload": tuple(CODEACT_SANDBOX_PRELOAD),
}
CODEACT_POOL_SIZE = env_int("CODEACT_POOL_SIZE", 2, minimum=0)
CODEACT_SANDBOX_IDLE_SECONDS = env_int("CODEACT_SANDBOX_IDLE_SECONDS", 15 * 60, minimum=10)
CODEACT_SANDBOXES_PER_USER = env_int("CODEACT_SANDBOXES_PER_USER", 3, minimum=1)
# Live sandboxes (pool and claimed) on one engine at once (with several Docker
# hosts: on each), whoever they belong to: an idle sandbox holds ~120 MB, a busy one
# up to CODEACT_SANDBOX_MEMORY_MB. On Kubernetes: in the sandbox namespace.
CODEACT_SANDBOXES_PER_HOST = env_int("CODEACT_SANDBOXES_PER_HOST", 50, minimum=1)
# Sandboxes that start (container created, kernel coming up) at the same moment,
# across all workers; the others queue for up to the start timeout. Fifty at once
# made the engine answer after docker-py's 60 s timeout.
CODEACT_SANDBOX_STARTS_AT_ONCE = env_int("CODEACT_SANDBOX_STARTS_AT_ONCE", 4, minimum=1)

# --- Web access (sandbox/egress.py; README "Web access") ------------------------------------
# off: sandboxes have no network at all. proxy: a conversation with web access gets a
# sandbox on CODEACT_EGRESS_NETWORK (internal, no route out) whose only reachable
# address is the egress proxy (Squid, started by `make run` / `manage.py egress run`).
CODEACT_EGRESS = env_str("CODEACT_EGRESS", "off").strip().lower() or "off"
if CODEACT_EGRESS not in ("off", "proxy"):
    raise ImproperlyConfigured("CODEACT_EGRESS must be off or proxy")
# Whether a new conversation starts with web access on (its owner can switch it).
CODEACT_EGRESS_DEFAULT = env_bool("CODEACT_EGRESS_DEFAULT", True)
CODEACT_EGRESS_NETWORK = env_str("CODEACT_EGRESS_NETWORK", "codeact-egress")
CODEACT_EGRESS_BRIDGE = env_str("CODEACT_EGRESS_BRIDGE", "codeact-egress")[:15]
CODEACT_EGRESS_SUBNET = env_str("CODEACT_EGRESS_SUBNET", "")  # empty: Docker picks one
CODEACT_EGRESS_PORT = env_int("CODEACT_EGRESS_PORT", 3128, minimum=1)
# Domains (a name covers its subdomains); an allowlist, when set, is all that is reachable.
CODEACT_EGRESS_ALLOW = env_list("CODEACT_EGRESS_ALLOW", "")
CODEACT_EGRESS_DENY = env_list("CODEACT_EGRESS_DENY", "")
CODEACT_EGRESS_PORTS = env_ports("CODEACT_EGRESS_PORTS", "80,443")
CODEACT_EGRESS_TLS_PORTS = env_ports("CODEACT_EGRESS_TLS_PORTS", "443")
# More networks or addresses to refuse, besides the private and reserved ranges and
# the deployment's own hosts (found from DATABASE_URL, REDIS_URL, the model URLs,
# ALLOWED_HOSTS and the proxy host's own addresses).
CODEACT_EGRESS_DENY_NETWORKS = env_list("CODEACT_EGRESS_DENY_NETWORKS", "")
CODEACT_EGRESS_READ_TIMEOUT = env_int("CODEACT_EGRESS_READ_TIMEOUT", 30, minimum=1)
CODEACT_EGRESS_REQUEST_SECONDS = env_int("CODEACT_EGRESS_REQUEST_SECONDS", 120, minimum=1)
CODEACT_EGRESS_REPLY_MAX_MB = env_int("CODEACT_EGRESS_REPLY_MAX_MB", 50, minimum=1)
CODEACT_EGRESS_UPLOAD_MAX_MB = env_int("CODEACT_EGRESS_UPLOAD_MAX_MB", 10, minimum=1)
CODEACT_EGRESS_REQUESTS_PER_MINUTE = env_int("CODEACT_EGRESS_REQUESTS_PER_MINUTE", 120, minimum=1)
# Bytes one sandbox may move through the proxy in its life (requests and replies).
CODEACT_EGRESS_BUDGET_MB = env_int("CODEACT_EGRESS_BUDGET_MB", 500, minimum=1)
CODEACT_EGRESS_STATE_DIR = Path(env_str("CODEACT_EGRESS_STATE_DIR", str(VAR_DIR / "egress")))

# --- Accounts, quotas, retention (issue 14: one user cannot starve the others) ----------
# open: anyone signs up; invite: only with an admin-made invite link; closed: nobody.
CODEACT_SIGNUP = env_str("CODEACT_SIGNUP", "open")
if CODEACT_SIGNUP not in ("open", "invite", "closed"):
    raise ImproperlyConfigured("CODEACT_SIGNUP must be open, invite or closed")
# Login throttling (django-axes): a username from one IP address is locked out after
# this many failures in a row, for this long. The address is the one the audit log
# records: the client's, behind CODEACT_TRUSTED_PROXIES.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("CODEACT_LOGIN_FAILURES", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("CODEACT_LOGIN_LOCKOUT_MINUTES", 15, minimum=0.1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "codeact_web.proxy.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# Per-user quotas; 0 means unlimited.
CODEACT_QUOTA_CONVERSATIONS = env_int("CODEACT_QUOTA_CONVERSATIONS", 1000, minimum=0)
CODEACT_QUOTA_TURNS_PER_HOUR = env_int("CODEACT_QUOTA_TURNS_PER_HOUR", 200, minimum=0)
CODEACT_QUOTA_CONCURRENT_TURNS = env_int("CODEACT_QUOTA_CONCURRENT_TURNS", 5, minimum=0)
CODEACT_QUOTA_TOKENS_PER_DAY = env_int("CODEACT_QUOTA_TOKENS_PER_DAY", 2_000_000, minimum=0)
CODEACT_QUOTA_STORED_MB = env_int("CODEACT_QUOTA_STORED_MB", 1024, minimum=0)
# `resume` frames (a full resync each) per user per window of this many seconds.
CODEACT_QUOTA_RESUMES = env_int("CODEACT_QUOTA_RESUMES", 30, minimum=0)
CODEACT_QUOTA_RESUME_WINDOW = env_int("CODEACT_QUOTA_RESUME_WINDOW", 10, minimum=1)
# delete: a user's delete removes the conversation at once. keep-for-review: it is
# hidden from the user and purged after CODEACT_RETENTION_DAYS, with its notes and flags.
CODEACT_RETENTION = env_str("CODEACT_RETENTION", "delete")
if CODEACT_RETENTION not in ("delete", "keep-for-review"):
    raise ImproperlyConfigured("CODEACT_RETENTION must be delete or keep-for-review")
CODEACT_RETENTION_DAYS = env_int("CODEACT_RETENTION_DAYS", 30, minimum=0)
CELERY_BEAT_SCHEDULE["purge-deleted-conversations"] = {
    "task": "chat.tasks.purge_deleted_conversations",
    "schedule": 3600.0,
}
