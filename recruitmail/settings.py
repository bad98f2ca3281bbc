"""RecruitMail settings.

Every value comes from the environment (django-environ). The defaults give the embedded setup:
SQLite in WAL mode and a Celery broker on the file system, so a fresh checkout runs with no
server to install. ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch to PostgreSQL and Redis.
A value that cannot be read fails at start with a message naming the variable.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

RUNNING_TESTS = "pytest" in sys.modules


def _read(name: str, cast, default):  # type: ignore[no-untyped-def]
    """Read one variable and turn a bad value into an error that names it."""
    try:
        return cast(name, default=default)
    except (ValueError, TypeError, ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(
            f"Environment variable {name} has an invalid value: {exc}"
        ) from exc


def _positive_int(name: str, default: int) -> int:
    value = _read(name, env.int, default)
    if value <= 0:
        raise ImproperlyConfigured(f"Environment variable {name} must be a positive whole number.")
    return value


DATA_DIR = Path(_read("RECRUITMAIL_DATA_DIR", env.str, str(BASE_DIR / "var")))
# The embedded setup keeps its database, mail store and broker queue here.
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = _read("DEBUG", env.bool, False)
SECRET_KEY = _read("SECRET_KEY", env.str, "")
if not SECRET_KEY:
    if DEBUG or RUNNING_TESTS:
        SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105
    else:
        raise ImproperlyConfigured(
            "Environment variable SECRET_KEY is not set (it is required unless DEBUG=true)."
        )
ALLOWED_HOSTS = _read("ALLOWED_HOSTS", env.list, ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _read("CSRF_TRUSTED_ORIGINS", env.list, [])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # Before staticfiles: runserver serves static files through WhiteNoise too, as production does.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "csp",
    "axes",
    "recruitmail.apps.RecruitmailConfig",
    "records",
    "mailboxes",
    "sharing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "records.middleware.UserPreferencesMiddleware",
    "recruitmail.session_idle.IdleSessionMiddleware",
    # Last: turns a locked-out sign-in into the sign-in page that says so.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "recruitmail.urls"
WSGI_APPLICATION = "recruitmail.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "records.context_processors.organization",
            ],
        },
    },
]

# Database: SQLite (WAL, set on connect in records.apps) unless DATABASE_URL says otherwise.
DATABASES = {
    "default": _read("DATABASE_URL", env.db_url, f"sqlite:///{DATA_DIR / 'recruitmail.sqlite3'}")
}
_SUPPORTED_ENGINES = ("django.db.backends.sqlite3", "django.db.backends.postgresql")
if DATABASES["default"].get("ENGINE") not in _SUPPORTED_ENGINES:
    raise ImproperlyConfigured(
        "Environment variable DATABASE_URL must start with postgres:// or sqlite:///."
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, for the test database: tests start real worker processes on it.
    # One per test run (process id), so that concurrent runs never share one.
    DATABASES["default"]["TEST"] = {
        "NAME": str(DATA_DIR / f"test-recruitmail-{os.getpid()}.sqlite3")
    }
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
            ),
        }
    )
    # Message's folder index includes columns for index-only scans on PostgreSQL; SQLite builds
    # the same index without them, which is all it can use (mailboxes migration 0008).
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", _read("DATABASE_CONN_MAX_AGE", env.int, 60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "records.User"
# The axes backend comes first: it refuses a locked-out sign-in before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
SESSION_COOKIE_AGE = _positive_int("SESSION_COOKIE_AGE", 60 * 60 * 24 * 14)
# A session unused this long is signed out (recruitmail.session_idle), whatever its age.
SESSION_IDLE_SECONDS = _positive_int("SESSION_IDLE_SECONDS", 60 * 60 * 8)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = _read("SECURE_COOKIES", env.bool, False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Behind a TLS-terminating proxy in production (all off by default for the embedded setup).
SECURE_SSL_REDIRECT = _read("SECURE_SSL_REDIRECT", env.bool, False)
SECURE_HSTS_SECONDS = _read("SECURE_HSTS_SECONDS", env.int, 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_HSTS_PRELOAD = _read("SECURE_HSTS_PRELOAD", env.bool, False)
if _read("BEHIND_TLS_PROXY", env.bool, False):
    # The proxy must set this header itself (and strip it from clients' requests).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy of every page (django-csp): no inline script or style, nothing from
# elsewhere, never framed. Responses that set their own policy keep it: the mail frame
# (mailboxes.message_frame, the one response that 'self' may frame) and downloads.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

# Sign-in throttling (django-axes; hooks in recruitmail.signin_throttle): AUTH_LOCKOUT_FAILURES
# wrong passwords for one email address from one client address lock that pair out for
# AUTH_LOCKOUT_SECONDS. The counts are database rows, shared by every web process.
AUTH_LOCKOUT_FAILURES = _positive_int("AUTH_LOCKOUT_FAILURES", 5)
AUTH_LOCKOUT_SECONDS = _positive_int("AUTH_LOCKOUT_SECONDS", 15 * 60)
# Only when the proxy in front appends the client's address to X-Forwarded-For (otherwise a
# client could choose the address it is counted under).
CLIENT_IP_FROM_FORWARDED_FOR = _read("CLIENT_IP_FROM_FORWARDED_FOR", env.bool, False)
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = AUTH_LOCKOUT_FAILURES
AXES_COOLOFF_TIME = timedelta(seconds=AUTH_LOCKOUT_SECONDS)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "recruitmail.signin_throttle.normalised_username"
AXES_CLIENT_IP_CALLABLE = "recruitmail.signin_throttle.client_ip_address"
AXES_LOCKOUT_CALLABLE = "recruitmail.signin_throttle.lockout_response"
# Attempts refused during a lock do not extend it, so the page can say when it ends.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
# Failures only: no table of every successful sign-in growing without end.
AXES_DISABLE_ACCESS_LOG = True
# The operator's log names the email address and client address (never the password).
AXES_SENSITIVE_PARAMETERS: list[str] = []

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("ja", "日本語")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = _read("TIME_ZONE", env.str, "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# The image collects static files at build time into its own folder (Dockerfile).
STATIC_ROOT = Path(_read("STATIC_ROOT", env.str, str(DATA_DIR / "staticfiles")))
# Production serves collected, compressed files with content-hashed names (cached for ever by
# WhiteNoise); debug and tests read the source folders directly, with no collectstatic step.
if DEBUG or RUNNING_TESTS:
    _STATIC_STORAGE = "django.contrib.staticfiles.storage.StaticFilesStorage"
    WHITENOISE_USE_FINDERS = True
    WHITENOISE_AUTOREFRESH = True
else:
    _STATIC_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"

# Raw mail and attachments go through Django's storage API only: a folder by default, or an
# S3-compatible bucket (django-storages) that every machine shares when MAIL_STORAGE_BACKEND=s3.
MEDIA_ROOT = Path(_read("MAIL_STORE_DIR", env.str, str(DATA_DIR / "mailstore")))
MAIL_STORAGE_BACKEND = _read("MAIL_STORAGE_BACKEND", env.str, "filesystem").lower()
_MAIL_STORE: dict[str, object] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
if MAIL_STORAGE_BACKEND == "s3":
    _bucket = _read("AWS_STORAGE_BUCKET_NAME", env.str, "")
    if not _bucket:
        raise ImproperlyConfigured(
            "Environment variable AWS_STORAGE_BUCKET_NAME is not set "
            "(it is required when MAIL_STORAGE_BACKEND=s3)."
        )
    _MAIL_STORE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _bucket,
            # Empty means AWS itself; set for MinIO, Ceph, R2 and the like.
            "endpoint_url": _read("AWS_S3_ENDPOINT_URL", env.str, "") or None,
            "region_name": _read("AWS_S3_REGION_NAME", env.str, "") or None,
            # Unset keys leave boto3 its own chain (instance role, ~/.aws).
            "access_key": _read("AWS_ACCESS_KEY_ID", env.str, "") or None,
            "secret_key": _read("AWS_SECRET_ACCESS_KEY", env.str, "") or None,
            # Private objects; mail is only ever served through the visibility check.
            "default_acl": None,
            "querystring_auth": True,
            # Names are content hashes: the same name always holds the same bytes.
            "file_overwrite": True,
            # Reads larger than this spill to a temporary file instead of memory.
            "max_memory_size": 10 * 1024 * 1024,
        },
    }
elif MAIL_STORAGE_BACKEND != "filesystem":
    raise ImproperlyConfigured(
        "Environment variable MAIL_STORAGE_BACKEND must be filesystem or s3."
    )
STORAGES = {
    "default": _MAIL_STORE,
    "staticfiles": {"BACKEND": _STATIC_STORAGE},
}

# Credentials: Fernet keys, newest first; older keys still decrypt (MultiFernet rotation).
FERNET_KEYS = _read("FERNET_KEYS", env.list, [])
if not FERNET_KEYS:
    if DEBUG or RUNNING_TESTS:
        FERNET_KEYS = ["Lk0x0s3Qd9gIWQpk3cS0u8Eo7JmK4sm3nQwl8mrhXnY="]
    else:
        raise ImproperlyConfigured(
            "Environment variable FERNET_KEYS is not set: give one or more Fernet keys "
            '(python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key())").'
        )

# Mail hosts that users type are resolved and refused when they point to loopback, private
# or link-local addresses; tests and the embedded demo allow loopback.
MAIL_HOSTS_ALLOW_LOOPBACK = _read("MAIL_HOSTS_ALLOW_LOOPBACK", env.bool, False)
MAIL_HOSTS_ALLOW_PRIVATE = _read("MAIL_HOSTS_ALLOW_PRIVATE", env.bool, False)
# Extra CA bundle for verifying mail servers (for private CAs); empty means the system store.
MAIL_CA_FILE = _read("MAIL_CA_FILE", env.str, "")
POP3_TIMEOUT_SECONDS = _positive_int("POP3_TIMEOUT_SECONDS", 30)
SMTP_TIMEOUT_SECONDS = _positive_int("SMTP_TIMEOUT_SECONDS", 30)
MAIL_MAX_MESSAGE_BYTES = _positive_int("MAIL_MAX_MESSAGE_BYTES", 50 * 1024 * 1024)
MAIL_POLL_INTERVAL_SECONDS = _positive_int("MAIL_POLL_INTERVAL_SECONDS", 300)
MAIL_POLL_LEASE_SECONDS = _positive_int("MAIL_POLL_LEASE_SECONDS", 900)
MAIL_QUARANTINE_AFTER_FAILURES = _positive_int("MAIL_QUARANTINE_AFTER_FAILURES", 3)

# Celery: a broker on the file system unless CELERY_BROKER_URL names Redis.
CELERY_BROKER_URL = _read("CELERY_BROKER_URL", env.str, "filesystem://")
# The filesystem transport's folder; a test run gets its own, so concurrent runs never share.
CELERY_BROKER_DIR = Path(
    _read(
        "CELERY_BROKER_DIR",
        env.str,
        str(DATA_DIR / (f"broker-test-{os.getpid()}" if RUNNING_TESTS else "broker")),
    )
)
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = CELERY_BROKER_DIR
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        # The exchange tables (kombu's default is "control" in the working directory).
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": MAIL_POLL_LEASE_SECONDS + 300}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = MAIL_POLL_LEASE_SECONDS - 60 if MAIL_POLL_LEASE_SECONDS > 120 else 60
CELERY_TASK_TIME_LIMIT = MAIL_POLL_LEASE_SECONDS
CELERY_TASK_ALWAYS_EAGER = _read("CELERY_TASK_ALWAYS_EAGER", env.bool, False)
# Two queues. The poll queue keeps Celery's default name, "celery", so that polls queued by an
# older release are still consumed after an upgrade: mailbox polls, "Fetch now" and the
# retention purges, each up to minutes long. The scheduler queue holds the beat tasks that only
# enqueue (the due polls every tick, the daily retention fan-out): they take milliseconds and
# expire after one tick, so behind a backlog of polls they would expire unrun, and scheduling
# would stop exactly when the workers are overloaded. A worker serving the scheduler queue
# alone never waits behind a poll (docs/operations.md: which worker consumes which queue).
TASK_QUEUE_POLLS = "celery"
TASK_QUEUE_SCHEDULER = "scheduler"
CELERY_TASK_DEFAULT_QUEUE = TASK_QUEUE_POLLS
# Declared, so that a worker started without -Q consumes both, and the embedded filesystem
# broker binds both (recruitmail/celery.py).
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in (TASK_QUEUE_POLLS, TASK_QUEUE_SCHEDULER)
]
CELERY_TASK_ROUTES = {
    "mailboxes.enqueue_due_polls": {"queue": TASK_QUEUE_SCHEDULER},
    "mailboxes.enqueue_retention_purges": {"queue": TASK_QUEUE_SCHEDULER},
    "mailboxes.extend_search_partitions": {"queue": TASK_QUEUE_SCHEDULER},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
MAIL_SCHEDULER_TICK_SECONDS = _positive_int("MAIL_SCHEDULER_TICK_SECONDS", 10)
CELERY_BEAT_SCHEDULE = {
    "enqueue-due-polls": {
        "task": "mailboxes.enqueue_due_polls",
        "schedule": float(MAIL_SCHEDULER_TICK_SECONDS),
        "options": {"expires": float(MAIL_SCHEDULER_TICK_SECONDS)},
    },
    # Each organisation's retention period (mailboxes.retention), once a day.
    "enqueue-retention-purges": {
        "task": "mailboxes.enqueue_retention_purges",
        "schedule": 24 * 60 * 60.0,
        "options": {"expires": 60 * 60.0},
    },
    # The search table's next half-year partition, months before it is needed
    # (mailboxes.search_partitions; PostgreSQL only).
    "extend-search-partitions": {
        "task": "mailboxes.extend_search_partitions",
        "schedule": 24 * 60 * 60.0,
        "options": {"expires": 60 * 60.0},
    },
}

# GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, it is a 404.
METRICS_TOKEN = _read("METRICS_TOKEN", env.str, "")

EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

LOG_LEVEL = _read("LOG_LEVEL", env.str, "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Failed sign-ins and lock-outs are warnings; the rest of axes' chatter is not needed.
        "axes": {"level": "WARNING"},
    },
}

if RUNNING_TESTS:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
