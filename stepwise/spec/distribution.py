"""Azure ML's `distribution` and `resources` of a command job, read into a Distribution.

One reader for the YAML loader, the registered components' mappings and the SDK, so they
accept and refuse the same things. Problems come back as (severity, field path, message).
"""

from __future__ import annotations

from .model import DISTRIBUTION_TYPES, Distribution

Finding = tuple[str, tuple[str, ...], str]
# `resources` keys that only a cloud cluster uses.
IGNORED_RESOURCE_KEYS = ("instance_type", "shm_size", "docker_args", "properties", "locations", "max_instance_count")
MULTI_HOST = "multi-host steps are not supported yet"


def count_key(kind: str) -> str:
    """The key that holds a distribution's process count, as Azure ML names it per type."""
    return "worker_count" if kind == "tensorflow" else "process_count_per_instance"


def _whole(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


def read_resources(resources: dict) -> list[Finding]:
    found: list[Finding] = []
    for key, value in resources.items():
        where = ("resources", str(key))
        if key == "instance_count":
            if not _whole(value):
                found.append(("error", where, f"instance_count must be a whole number of 1 or more, got {value!r}"))
            elif value > 1:
                found.append(
                    (
                        "error",
                        where,
                        f"instance_count {value}: {MULTI_HOST} (use distribution.process_count_per_instance "
                        "for several processes on one host)",
                    )
                )
        elif key in IGNORED_RESOURCE_KEYS:
            found.append(("warning", where, f"resources.{key} is not used by Stepwise and is ignored"))
        else:
            found.append(("warning", where, f"unknown key 'resources.{key}' is ignored"))
    return found


def read_distribution(dist: dict) -> tuple[Distribution | None, list[Finding]]:
    if not dist:
        return None, []
    kind = dist.get("type")
    if kind not in DISTRIBUTION_TYPES:
        what = "not supported yet" if kind == "ray" else "unknown"
        message = f"distribution type {kind!r} is {what} (one of {', '.join(DISTRIBUTION_TYPES)})"
        return None, [("error", ("distribution", "type"), message)]
    key = count_key(kind)
    allowed = {"type", key} | ({"parameter_server_count"} if kind == "tensorflow" else set())
    found: list[Finding] = [
        ("warning", ("distribution", str(k)), f"unknown key 'distribution.{k}' is ignored")
        for k in dist
        if k not in allowed
    ]
    count = dist.get(key)
    count = 1 if count is None else count
    if not _whole(count):
        return None, [
            *found,
            ("error", ("distribution", key), f"{key} must be a whole number of 1 or more, got {count!r}"),
        ]
    if dist.get("parameter_server_count"):
        message = "parameter servers are not supported yet (parameter_server_count must be 0)"
        return None, [*found, ("error", ("distribution", "parameter_server_count"), message)]
    return Distribution(type=kind, processes=count), found


def to_mapping(distribution: Distribution) -> dict:
    return {"type": distribution.type, count_key(distribution.type): distribution.processes}
