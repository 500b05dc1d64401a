"""Settings for the test suite (pytest-django exports DJANGO_SETTINGS_MODULE, so the
servers and workers that tests start use them too)."""

from pipelines_ui.settings import *  # noqa: F403
from pipelines_ui.settings import env_instance, env_str

# A Redis database of the tests' own, so test jobs never land in a developer's queues.
REDIS_URL = env_str("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")
RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": -1}}
CACHES = {**CACHES, "api": {**CACHES["api"], "LOCATION": REDIS_URL}}  # noqa: F405
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # One prefix for every test database: the run groups carry the instance (runs.broadcast).
        "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60, "prefix": "stepwise-test:"},
    }
}
# Derived when used (runs.queues.instance_id) from the database the process is connected to:
# pytest-django renames it to the test database only once the session has started, and the
# workers tests start get that test database's DATABASE_URL.
STEPWISE_INSTANCE = env_instance("STEPWISE_INSTANCE", "")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
