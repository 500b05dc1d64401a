"""Stepwise's benchmark suite: `make bench` (or `python -m bench --help`).

Every figure runs on the real stack: the database from DATABASE_URL (a separate bench
database), the Redis at REDIS_URL, real `manage.py stepwise_worker` processes, real
subprocess steps and, for live events, a real daphne server. Nothing is mocked.
"""
