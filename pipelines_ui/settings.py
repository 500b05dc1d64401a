"""Stepwise settings: one module, driven by environment variables with embedded defaults."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp import constants as csp_constants
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("STEPWISE_VAR", BASE_DIR / "var"))


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true or false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def database_instance(database: dict) -> str:
    """A short id of one install, from the identity of its database: the same for every process
    pointed at that database, different for another database (its name first, to be recognisable).
    """
    engine = database["ENGINE"].rpartition(".")[2]
    name = str(database["NAME"])
    if engine == "sqlite3":
        name = os.path.realpath(name)
        identity = f"{engine}:{name}"
        label = Path(name).stem
    else:
        # A DATABASE_URL spelled another way (127.0.0.1 or localhost, the default port or none)
        # names the same database: one install.
        host = (database.get("HOST") or "").lower()
        host = "localhost" if host in ("", "127.0.0.1", "::1") else host
        port = str(database.get("PORT") or ("5432" if engine.startswith("postgres") else ""))
        identity = f"{engine}:{host}:{port}/{name}"
        label = name
    digest = hashlib.sha256(identity.encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', label)[:24]}-{digest}"


def env_instance(name: str, default: str) -> str:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    # It ends up in RQ job ids and channel-layer group names, which allow no more than this.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", raw):
        raise ImproperlyConfigured(f"{name}={raw!r}: use up to 40 letters, digits, '_' or '-'")
    return raw


def env_json_object(name: str, default: dict) -> dict:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ImproperlyConfigured(f'{name} must be a JSON object, like {{"endpoint_url": "http://..."}}')
    return value


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    # A stable per-checkout key for development, so sessions survive restarts.
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _key_file.write_text(secrets.token_urlsafe(50))
    SECRET_KEY = _key_file.read_text().strip()
# Earlier keys, comma-separated, still accepted after a rotation: sessions signed with them,
# and secret run inputs encrypted with them (runs/secrets.py).
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Production over HTTPS is opted into, not inferred from DEBUG (off by default): `make run`
# serves plain http://127.0.0.1, where secure cookies and an HTTPS redirect would lock users out.
STEPWISE_HTTPS = env_bool("STEPWISE_HTTPS", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", STEPWISE_HTTPS)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", STEPWISE_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", STEPWISE_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if STEPWISE_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", STEPWISE_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", STEPWISE_HTTPS)
# Behind a proxy that terminates TLS: the header it sets to "https" (e.g. X-Forwarded-Proto).
# Only with a proxy that overwrites the header: otherwise clients could claim HTTPS themselves.
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER", "").strip().upper().replace("-", "_")
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = (_proxy_header if _proxy_header.startswith("HTTP_") else f"HTTP_{_proxy_header}", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "bootstrap4",
    "channels",
    "django_rq",
    "pipelines_ui",
    "runs",
    "runs.registry",
    "axes",
    "csp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "pipelines_ui.api",
]
# daphne's app only makes `runserver` serve the ASGI app (websockets included); `make run` starts
# daphne itself. Installed for every process, it imports Twisted: 0.3 s of CPU at the start of
# each worker and command.
if sys.argv[1:2] == ["runserver"]:
    INSTALLED_APPS.insert(0, "daphne")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before whitenoise, so that static files get the header too; its response hook runs last.
    "pipelines_ui.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into AXES_LOCKOUT_CALLABLE's page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pipelines_ui.urls"
WSGI_APPLICATION = "pipelines_ui.wsgi.application"
ASGI_APPLICATION = "pipelines_ui.asgi.application"

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

_SQLITE_URL = f"sqlite:///{VAR_DIR / 'stepwise.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _SQLITE_URL), conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web server, workers and reconciler all write: WAL plus a busy timeout
    # avoid "database is locked"; IMMEDIATE takes the write lock up front.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    # A file (not :memory:) so that the workers and servers tests start can share it; one per
    # test process, so that concurrent test sessions do not trample each other.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("STEPWISE_DB_PREPARED", True):
    # The hot path's statements (runs/rows.py) prepared on the server after their 5th execution
    # on a connection. Off (STEPWISE_DB_PREPARED=0) behind a pooler that cannot hold them.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Namespaces every queue, job id, worker name and channel-layer group this install puts in Redis,
# so that installs sharing one Redis never take each other's work. Read it through
# runs.queues.instance_id(): it may be empty (test settings), meaning "derive it from the
# database connection when used".
STEPWISE_INSTANCE = env_instance("STEPWISE_INSTANCE", database_instance(DATABASES["default"]))

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": -1}}
RQ = {"COMMIT_MODE": "on_db_commit"}
# django-rq's dashboard, inside the admin at /admin/django_rq/dashboard/: staff only (the admin's login).
RQ_SHOW_ADMIN_LINK = True

# The API's per-token rate limits are counted in Redis, shared by every server process
# (keys carry the instance: pipelines_ui/api/throttling.py).
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "api": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60, "prefix": f"stepwise:{STEPWISE_INSTANCE}:"},
    }
}

STEPWISE_ARTIFACTS = env_str("STEPWISE_ARTIFACTS", str(VAR_DIR / "artifacts"))
# For an object store URL (s3://bucket/prefix): fsspec storage options as JSON, e.g.
# {"endpoint_url": "http://minio:9000"}; s3fs also reads AWS_ENDPOINT_URL and the other AWS_* variables.
STEPWISE_ARTIFACTS_OPTIONS = env_json_object("STEPWISE_ARTIFACTS_OPTIONS", {})
# Where a worker keeps its downloaded copies of a remote store's artifacts (steps read local paths).
STEPWISE_ARTIFACTS_CACHE = Path(env_str("STEPWISE_ARTIFACTS_CACHE", str(VAR_DIR / "cache" / "artifacts")))
# Above this size the least recently used copies in that cache go, never one a step on the host is
# using; 0 keeps only what running steps use.
STEPWISE_ARTIFACTS_CACHE_MAX_BYTES = env_int("STEPWISE_ARTIFACTS_CACHE_MAX_BYTES", 20 * 1024**3)
if STEPWISE_ARTIFACTS_CACHE_MAX_BYTES < 0:
    raise ImproperlyConfigured("STEPWISE_ARTIFACTS_CACHE_MAX_BYTES must be 0 or more")
STEPWISE_WORKDIR = Path(env_str("STEPWISE_WORKDIR", str(VAR_DIR / "work")))
# Where a worker keeps the virtual environments it builds from steps' conda files, one per content
# hash, reused by every later step asking for the same packages (runs/environments.py).
STEPWISE_ENVS_CACHE = Path(env_str("STEPWISE_ENVS_CACHE", str(VAR_DIR / "cache" / "envs")))
# Folders whose wheels conda files may name by local path (`-f /dir`, `pkg @ file:///dir/x.whl`),
# comma-separated: the worker installs them, so never the whole disk. None by default.
STEPWISE_ENV_PACKAGE_DIRS = [Path(p) for p in env_str("STEPWISE_ENV_PACKAGE_DIRS", "").split(",") if p.strip()]
# How long building one environment may take before the step fails (a stalled download).
STEPWISE_ENV_BUILD_TIMEOUT_S = env_int("STEPWISE_ENV_BUILD_TIMEOUT_S", 1800)
# Folders a team admin may make local datastores in (comma-separated): a datastore's files are
# readable by every member of its team, so never the whole disk.
STEPWISE_DATASTORE_ROOTS = [
    Path(p) for p in env_str("STEPWISE_DATASTORE_ROOTS", str(VAR_DIR / "datastores")).split(",") if p.strip()
]
# The largest file the data upload page takes (sent in chunks, so no request is this big).
STEPWISE_DATA_UPLOAD_MAX_BYTES = env_int("STEPWISE_DATA_UPLOAD_MAX_BYTES", 5 * 1024**3)
# Pipeline inputs read from the web (`path: https://...`, runs/remote_inputs.py): the largest file,
# the connect and read timeouts, how many redirects to follow, whether plain http is allowed,
# and which hosts may be read. With no hosts listed any public host may be; a host that resolves
# to a loopback, private or link-local address (the server's own services, a cloud metadata
# endpoint at 169.254.169.254) is refused unless it is listed by name.
STEPWISE_REMOTE_INPUT_MAX_BYTES = env_int("STEPWISE_REMOTE_INPUT_MAX_BYTES", 5 * 1024**3)
STEPWISE_REMOTE_INPUT_CONNECT_TIMEOUT_S = env_int("STEPWISE_REMOTE_INPUT_CONNECT_TIMEOUT_S", 10)
STEPWISE_REMOTE_INPUT_READ_TIMEOUT_S = env_int("STEPWISE_REMOTE_INPUT_READ_TIMEOUT_S", 60)
STEPWISE_REMOTE_INPUT_MAX_REDIRECTS = env_int("STEPWISE_REMOTE_INPUT_MAX_REDIRECTS", 5)
STEPWISE_REMOTE_INPUT_ALLOW_HTTP = env_bool("STEPWISE_REMOTE_INPUT_ALLOW_HTTP", False)
STEPWISE_REMOTE_INPUT_HOSTS = [h.lower() for h in env_list("STEPWISE_REMOTE_INPUT_HOSTS", [])]
# A PEM file of the certificate authorities https downloads trust instead of the public ones
# (an internal mirror with a private CA); empty: the public ones (certifi's).
STEPWISE_REMOTE_INPUT_CA_BUNDLE = env_str("STEPWISE_REMOTE_INPUT_CA_BUNDLE", "")
if STEPWISE_REMOTE_INPUT_CA_BUNDLE and not Path(STEPWISE_REMOTE_INPUT_CA_BUNDLE).is_file():
    raise ImproperlyConfigured(f"STEPWISE_REMOTE_INPUT_CA_BUNDLE: no such file {STEPWISE_REMOTE_INPUT_CA_BUNDLE!r}")
if min(STEPWISE_REMOTE_INPUT_CONNECT_TIMEOUT_S, STEPWISE_REMOTE_INPUT_READ_TIMEOUT_S) <= 0:
    raise ImproperlyConfigured("STEPWISE_REMOTE_INPUT_*_TIMEOUT_S must be more than 0")
if STEPWISE_REMOTE_INPUT_MAX_REDIRECTS < 0 or STEPWISE_REMOTE_INPUT_MAX_BYTES <= 0:
    raise ImproperlyConfigured("STEPWISE_REMOTE_INPUT_MAX_REDIRECTS must be 0 or more, *_MAX_BYTES more than 0")
STEPWISE_UPLOAD_MAX_BYTES = env_int("STEPWISE_UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
STEPWISE_YAML_MAX_BYTES = env_int("STEPWISE_YAML_MAX_BYTES", 1024 * 1024)
STEPWISE_LOG_LINE_MAX = env_int("STEPWISE_LOG_LINE_MAX", 4096)
# The database keeps the first and the last this many lines of each step attempt's log (the run
# page and the log endpoint show them); the whole log goes to the artifact store, gzipped.
STEPWISE_LOG_HEAD_LINES = env_int("STEPWISE_LOG_HEAD_LINES", 1000)
STEPWISE_LOG_TAIL_LINES = env_int("STEPWISE_LOG_TAIL_LINES", 1000)
if STEPWISE_LOG_HEAD_LINES < 0 or STEPWISE_LOG_TAIL_LINES < 0:
    raise ImproperlyConfigured("STEPWISE_LOG_HEAD_LINES and STEPWISE_LOG_TAIL_LINES must be 0 or more")
STEPWISE_HEARTBEAT_S = env_int("STEPWISE_HEARTBEAT_S", 5)
# How long a queued sweep trial waits for another worker to claim it before the sweep's own
# worker runs it itself (runs/trial_handles.py): what keeps a lone worker's sweep going.
STEPWISE_TRIAL_CLAIM_DELAY_S = env_int("STEPWISE_TRIAL_CLAIM_DELAY_S", 1)
# Before reusing an earlier output: "hash" re-hashes its files, "exists" only checks they are there
# (for stores of very large outputs, where re-hashing on every rerun costs too much).
STEPWISE_REUSE_VERIFY = env_str("STEPWISE_REUSE_VERIFY", "hash")
if STEPWISE_REUSE_VERIFY not in ("hash", "exists"):
    raise ImproperlyConfigured(f"STEPWISE_REUSE_VERIFY={STEPWISE_REUSE_VERIFY!r}: use hash or exists")
STEPWISE_RETRY_BACKOFF_S = env_int("STEPWISE_RETRY_BACKOFF_S", 2)
# A root worker runs sandboxed steps as this unprivileged uid and gid (runs/sandbox.py): nobody.
STEPWISE_SANDBOX_UID = env_int("STEPWISE_SANDBOX_UID", 65534)
STEPWISE_SANDBOX_GID = env_int("STEPWISE_SANDBOX_GID", 65534)
if STEPWISE_SANDBOX_UID <= 0 or STEPWISE_SANDBOX_GID <= 0:
    raise ImproperlyConfigured("STEPWISE_SANDBOX_UID and STEPWISE_SANDBOX_GID must name an unprivileged user, not root")
# Names of the worker's environment variables that steps get too (e.g. HTTP_PROXY,NO_PROXY);
# steps get nothing else of it but the locale and time zone.
STEPWISE_STEP_ENV_PASSTHROUGH = env_list("STEPWISE_STEP_ENV_PASSTHROUGH", [])
# Folders of this host that every sandboxed step sees at the same path, read-write or read-only
# (a shared scratch or dataset mount): comma-separated absolute paths.
STEPWISE_SANDBOX_SHARED = env_list("STEPWISE_SANDBOX_SHARED", [])
STEPWISE_SANDBOX_SHARED_RO = env_list("STEPWISE_SANDBOX_SHARED_RO", [])
for _shared in STEPWISE_SANDBOX_SHARED + STEPWISE_SANDBOX_SHARED_RO:
    if not os.path.isabs(_shared):
        raise ImproperlyConfigured(f"STEPWISE_SANDBOX_SHARED(_RO): {_shared!r} is not an absolute path")
# Devices of this host that every sandboxed step gets besides null, zero, random and the like:
# comma-separated /dev paths or patterns, e.g. /dev/nvidia* for the GPUs of a GPU worker host.
STEPWISE_SANDBOX_DEVICES = env_list("STEPWISE_SANDBOX_DEVICES", [])
for _device in STEPWISE_SANDBOX_DEVICES:
    if not _device.startswith("/dev/") or ".." in _device.split("/"):
        raise ImproperlyConfigured(f"STEPWISE_SANDBOX_DEVICES: {_device!r} is not a path under /dev")
STEPWISE_BASE_URL = env_str("STEPWISE_BASE_URL", f"http://127.0.0.1:{env_int('PORT', 8000)}")
# Notification deliveries (docs/webhooks.md): the seconds before each retry (so their count + 1
# attempts in all), and each send's timeout.
try:
    STEPWISE_WEBHOOK_BACKOFF_S = tuple(
        int(s) for s in env_list("STEPWISE_WEBHOOK_BACKOFF_S", ["10", "30", "120", "600", "3600", "10800", "21600"])
    )
except ValueError:
    raise ImproperlyConfigured("STEPWISE_WEBHOOK_BACKOFF_S: give whole seconds separated by commas") from None
STEPWISE_WEBHOOK_TIMEOUT_S = env_int("STEPWISE_WEBHOOK_TIMEOUT_S", 10)
# A `compute:` name no target answers to: "error" (refused by validate, import and run) or
# "default" (the step runs on the default target; `validate` warns), for pipelines written
# against an Azure ML workspace's cluster names.
STEPWISE_UNKNOWN_COMPUTE = env_str("STEPWISE_UNKNOWN_COMPUTE", "error")
if STEPWISE_UNKNOWN_COMPUTE not in ("error", "default"):
    raise ImproperlyConfigured(f"STEPWISE_UNKNOWN_COMPUTE={STEPWISE_UNKNOWN_COMPUTE!r}: use error or default")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "pipeline_list"
LOGOUT_REDIRECT_URL = "login"
# Invitation emails. The console backend prints them where `make run` logs; set EMAIL_BACKEND
# (django.core.mail.backends.smtp.EmailBackend and EMAIL_HOST...) to send them for real.
# The test runner swaps in locmem.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "stepwise@localhost")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)

# Sign-in throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from
# one address, that pair is locked out for AXES_COOLOFF_TIME, the right password included. The
# attempts live in the database, so every server process sees the same count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "pipelines_ui.views.login_locked_out"
AXES_USERNAME_CALLABLE = "pipelines_ui.sign_in_form.axes_username"
AXES_VERBOSE = False  # its start-up banner would land in every management command's stderr

# No inline script or style anywhere: page data goes through json_script, behaviour through
# static/js, looks through static/css (graph colours and bar widths are SVG attributes, which
# are no styles). pipelines_ui/csp.py adds the host's ws:// and wss:// to connect-src.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [csp_constants.SELF],
        "style-src": [csp_constants.SELF],
        # Bootstrap's CSS draws its select arrows and toggler icons as data: SVG images.
        "img-src": [csp_constants.SELF, "data:"],
        "connect-src": [csp_constants.SELF],
        "frame-ancestors": [csp_constants.NONE],
        "object-src": [csp_constants.NONE],
        "base-uri": [csp_constants.SELF],
        "form-action": [csp_constants.SELF],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the source folders: `make run` works without collectstatic.
WHITENOISE_USE_FINDERS = True
DATA_UPLOAD_MAX_MEMORY_SIZE = STEPWISE_UPLOAD_MAX_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

BOOTSTRAP4 = {
    "css_url": {"url": "/static/vendor/bootstrap/bootstrap.min.css"},
    "javascript_url": {"url": "/static/vendor/bootstrap/bootstrap.bundle.min.js"},
    "jquery_url": {"url": "/static/vendor/jquery/jquery.min.js"},
    "jquery_slim_url": {"url": "/static/vendor/jquery/jquery.min.js"},
    "include_jquery": True,
    # No green "valid" marks on a form shown again for its errors: a secret field comes back
    # empty on purpose, and a tick next to it (or any untouched field) says nothing useful.
    "success_css_class": "",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# ---- the REST API (design.md, REST API; pipelines_ui/api/) ---------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "pipelines_ui.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["pipelines_ui.api.throttling.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["pipelines_ui.api.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "pipelines_ui.api.errors.api_exception_handler",
    # The API speaks JSON only: `?format=` is an ordinary (ignored) parameter, not a 404 for an
    # unknown renderer (schemathesis found one).
    "URL_FORMAT_OVERRIDE": None,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
# Requests per token: "N/s", "N/min", "N/hour" or "N/day"; over it, 429 with Retry-After.
STEPWISE_API_RATE = env_str("STEPWISE_API_RATE", "600/min")
SPECTACULAR_SETTINGS = {
    "TITLE": "Stepwise API",
    "DESCRIPTION": "Pipelines, runs, logs and outputs of a Stepwise instance. Authenticate with "
    "`Authorization: Bearer <token>` (tokens: /account/tokens/).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Swagger UI's default sends the schema's address to validator.swagger.io for a badge: the
    # docs stay offline.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {"RunState": "runs.models.RunState", "StepState": "runs.models.StepState"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "pipelines_ui.api.pagination.declare_page_parameters",
    ],
}
