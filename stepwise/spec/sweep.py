"""A `type: sweep` job's search: Azure ML's sweep job keys as typed data, read and written.

The trial (a command component) is the sweep step's own `Step` fields; what is here is what
a sweep adds to it: `search_space`, `sampling_algorithm`, `objective`, `limits` and
`early_termination`. `parse_sweep` reads the YAML mapping and reports problems by field path,
so the loader can add the file and line; nothing here touches Django.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

# Each distribution and the numeric parameters it takes, as Azure ML names them. `loguniform`
# and `qloguniform` take their bounds in log space (exp(uniform(min, max))), as Azure ML does.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "choice": ("values",),
    "randint": ("upper",),
    "uniform": ("min_value", "max_value"),
    "quniform": ("min_value", "max_value", "q"),
    "loguniform": ("min_value", "max_value"),
    "qloguniform": ("min_value", "max_value", "q"),
    "normal": ("mu", "sigma"),
    "qnormal": ("mu", "sigma", "q"),
    "lognormal": ("mu", "sigma"),
    "qlognormal": ("mu", "sigma", "q"),
}
SAMPLING_ALGORITHMS = ("random", "grid", "bayesian")
# What Azure ML's Bayesian sampling takes.
BAYESIAN_DISTRIBUTIONS = ("choice", "uniform", "quniform")
GOALS = ("maximize", "minimize")
POLICIES: dict[str, tuple[str, ...]] = {
    "bandit": ("evaluation_interval", "delay_evaluation", "slack_factor", "slack_amount"),
    "median_stopping": ("evaluation_interval", "delay_evaluation"),
    "truncation_selection": (
        "evaluation_interval",
        "delay_evaluation",
        "truncation_percentage",
        "exclude_finished_jobs",
    ),
}
SWEEP_KEYS = ("trial", "search_space", "sampling_algorithm", "objective", "limits", "early_termination")
# Azure ML's default; one worker runs the trials of a sweep, so concurrency has a ceiling of its own.
DEFAULT_MAX_TOTAL_TRIALS = 1000
MAX_TOTAL_TRIALS = 1000
DEFAULT_MAX_CONCURRENT_TRIALS = 4
MAX_CONCURRENT_TRIALS = 16
MAX_CHOICES = 1000


@dataclass
class Distribution:
    type: str
    # `choice`: the values; every other distribution: its numeric parameters.
    values: list[str | int | float | bool] = field(default_factory=list)
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class Sampling:
    type: str = "random"
    seed: int | None = None


@dataclass
class Objective:
    primary_metric: str
    goal: str


@dataclass
class SweepLimits:
    max_total_trials: int = DEFAULT_MAX_TOTAL_TRIALS
    max_concurrent_trials: int = DEFAULT_MAX_CONCURRENT_TRIALS
    timeout_s: int | None = None
    trial_timeout_s: int | None = None


@dataclass
class EarlyTermination:
    type: str
    evaluation_interval: int = 1
    delay_evaluation: int = 0
    slack_factor: float | None = None
    slack_amount: float | None = None
    truncation_percentage: int = 0
    exclude_finished_jobs: bool = False


@dataclass
class SweepSpec:
    search_space: dict[str, Distribution]
    objective: Objective
    sampling: Sampling = field(default_factory=Sampling)
    limits: SweepLimits = field(default_factory=SweepLimits)
    early_termination: EarlyTermination | None = None


# (field path, message, severity)
Finding = tuple[tuple[str, ...], str, str]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Reader:
    def __init__(self) -> None:
        self.found: list[Finding] = []

    def error(self, message: str, *path: str) -> None:
        self.found.append((path, message, "error"))

    def warn(self, message: str, *path: str) -> None:
        self.found.append((path, message, "warning"))

    def mapping(self, raw: dict, key: str) -> dict | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.error(f"{key} must be a mapping", key)
            return None
        return value

    def distribution(self, name: str, raw: object) -> Distribution | None:
        path = ("search_space", name)
        if not isinstance(raw, dict):
            self.error("a search space entry is a mapping with a 'type'", *path)
            return None
        type_ = raw.get("type")
        if type_ not in DISTRIBUTIONS:
            known = ", ".join(DISTRIBUTIONS)
            self.error(f"unknown distribution {type_!r} (use {known})", *path, "type")
            return None
        wanted = DISTRIBUTIONS[type_]
        for key in raw:
            if key != "type" and key not in wanted:
                self.warn(f"'{key}' is not a parameter of {type_} and is ignored", *path, key)
        missing = [key for key in wanted if key not in raw]
        if missing:
            self.error(f"{type_} needs {', '.join(missing)}", *path)
            return None
        if type_ == "choice":
            values = raw["values"]
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str | int | float | bool) for v in values)
            ):
                self.error("values must be a non-empty list of single values", *path, "values")
                return None
            if len(values) > MAX_CHOICES:
                self.error(f"values has more than {MAX_CHOICES} entries", *path, "values")
                return None
            return Distribution(type=type_, values=list(values))
        params: dict[str, float] = {}
        for key in wanted:
            if not _number(raw[key]):
                self.error(f"{key} must be a number, got {raw[key]!r}", *path, key)
                return None
            params[key] = raw[key]
        if type_ == "randint" and not (_whole(params["upper"]) and params["upper"] >= 1):
            self.error("upper must be a whole number of at least 1 (values are 0 to upper - 1)", *path, "upper")
            return None
        if "min_value" in params and params["min_value"] > params["max_value"]:
            self.error("min_value is greater than max_value", *path, "min_value")
            return None
        if "sigma" in params and params["sigma"] < 0:
            self.error("sigma must not be negative", *path, "sigma")
            return None
        if "q" in params and params["q"] <= 0:
            self.error("q must be greater than 0", *path, "q")
            return None
        if type_ in ("loguniform", "qloguniform") and params["max_value"] > 700:
            # exp() of more overflows a float; Azure ML's bounds are in log space.
            self.error("max_value is in log space (values are exp(uniform)): at most 700", *path, "max_value")
            return None
        return Distribution(type=type_, params=params)

    def sampling(self, raw: object) -> Sampling | None:
        path = ("sampling_algorithm",)
        if raw is None:
            return Sampling()
        if isinstance(raw, str):
            raw = {"type": raw}
        if not isinstance(raw, dict):
            self.error("sampling_algorithm is random, grid or a mapping with a 'type'", *path)
            return None
        type_ = str(raw.get("type", "")).lower()
        if type_ not in SAMPLING_ALGORITHMS:
            self.error(f"unknown sampling_algorithm {raw.get('type')!r} (use random, grid or bayesian)", *path)
            return None
        sampling = Sampling(type=type_)
        for key, value in raw.items():
            if key == "type":
                continue
            if key == "seed" and type_ == "random":
                if not _whole(value):
                    self.error(f"seed must be a whole number, got {value!r}", *path, key)
                    return None
                sampling.seed = value
            elif key in ("rule", "logbase") and type_ == "random":
                self.warn(f"'{key}' is not used by Stepwise: values are drawn uniformly at random", *path, key)
            else:
                self.warn(f"unknown key '{key}' is ignored", *path, key)
        return sampling

    def objective(self, raw: dict) -> Objective | None:
        obj = self.mapping(raw, "objective")
        if obj is None:
            self.error("a sweep needs an objective (primary_metric and goal)", "objective")
            return None
        metric, goal = obj.get("primary_metric"), obj.get("goal")
        ok = True
        if not isinstance(metric, str) or not metric.strip():
            self.error(
                "primary_metric is required: the name of the metric the trials log", "objective", "primary_metric"
            )
            ok = False
        if not isinstance(goal, str) or goal.lower() not in GOALS:
            self.error(f"goal must be maximize or minimize, got {goal!r}", "objective", "goal")
            ok = False
        for key in obj:
            if key not in ("primary_metric", "goal"):
                self.warn(f"unknown key '{key}' is ignored", "objective", key)
        return Objective(primary_metric=str(metric).strip(), goal=str(goal).lower()) if ok else None

    def limits(self, raw: dict) -> SweepLimits:
        limits = SweepLimits()
        values = self.mapping(raw, "limits") or {}
        ceilings = {"max_total_trials": MAX_TOTAL_TRIALS, "max_concurrent_trials": MAX_CONCURRENT_TRIALS}
        for key, value in values.items():
            if key in ceilings:
                if not _whole(value) or not 1 <= value <= ceilings[key]:
                    self.error(f"{key} must be a whole number from 1 to {ceilings[key]}, got {value!r}", "limits", key)
                    continue
                setattr(limits, key, value)
            elif key in ("timeout", "trial_timeout"):
                if not _whole(value) or value < 1:
                    self.error(f"{key} must be a whole number of seconds, got {value!r}", "limits", key)
                    continue
                setattr(limits, f"{key}_s", value)
            else:
                self.warn(f"limits.{key} is not used by Stepwise and is ignored", "limits", key)
        if "max_concurrent_trials" not in values:
            limits.max_concurrent_trials = min(limits.max_total_trials, DEFAULT_MAX_CONCURRENT_TRIALS)
        return limits

    def early_termination(self, raw: dict) -> EarlyTermination | None:
        et = self.mapping(raw, "early_termination")
        if et is None:
            return None
        path = ("early_termination",)
        type_ = et.get("type")
        if type_ not in POLICIES:
            self.error(f"unknown early_termination type {type_!r} (use {', '.join(POLICIES)})", *path, "type")
            return None
        policy = EarlyTermination(type=type_)
        for key, value in et.items():
            if key == "type":
                continue
            if key not in POLICIES[type_]:
                self.warn(f"'{key}' is not a setting of {type_} and is ignored", *path, key)
            elif key in ("evaluation_interval", "delay_evaluation"):
                if not _whole(value) or value < 0:
                    self.error(f"{key} must be a whole number of at least 0, got {value!r}", *path, key)
                else:
                    # Azure ML's 0 means "every report", as 1 does.
                    setattr(policy, key, max(value, 1) if key == "evaluation_interval" else value)
            elif key in ("slack_factor", "slack_amount"):
                if not _number(value) or value < 0:
                    self.error(f"{key} must be a number of at least 0, got {value!r}", *path, key)
                else:
                    setattr(policy, key, float(value))
            elif key == "truncation_percentage":
                if not _whole(value) or not 1 <= value <= 99:
                    self.error(f"truncation_percentage must be a whole number from 1 to 99, got {value!r}", *path, key)
                else:
                    policy.truncation_percentage = value
            elif key == "exclude_finished_jobs":
                if not isinstance(value, bool):
                    self.error("exclude_finished_jobs must be true or false", *path, key)
                else:
                    policy.exclude_finished_jobs = value
        if type_ == "bandit" and (policy.slack_factor is None) == (policy.slack_amount is None):
            self.error("a bandit policy needs one of slack_factor or slack_amount", *path)
            return None
        if type_ == "truncation_selection" and not policy.truncation_percentage:
            self.error("a truncation_selection policy needs truncation_percentage", *path)
            return None
        return policy


def parse_sweep(raw: dict) -> tuple[SweepSpec | None, list[Finding]]:
    """The sweep keys of a `type: sweep` job (the trial is read by the loader); None on errors."""
    reader = _Reader()
    space_raw = reader.mapping(raw, "search_space")
    space: dict[str, Distribution] = {}
    if not space_raw:
        reader.error("a sweep needs a search_space with at least one input", "search_space")
    for name, entry in (space_raw or {}).items():
        dist = reader.distribution(str(name), entry)
        if dist is not None:
            space[str(name)] = dist
    sampling = reader.sampling(raw.get("sampling_algorithm"))
    objective = reader.objective(raw)
    limits = reader.limits(raw)
    policy = reader.early_termination(raw)
    if sampling is not None and sampling.type == "grid":
        for name, dist in space.items():
            if dist.type != "choice":
                reader.error("grid sampling takes only choice distributions", "search_space", name, "type")
    if sampling is not None and sampling.type == "bayesian":
        # As in Azure ML: the model needs these distributions, and it decides what runs next from
        # completed trials, which early termination would cut short.
        for name, dist in space.items():
            if dist.type not in BAYESIAN_DISTRIBUTIONS:
                reader.error(
                    f"bayesian sampling takes only {', '.join(BAYESIAN_DISTRIBUTIONS)} distributions",
                    "search_space",
                    name,
                    "type",
                )
        if policy is not None:
            reader.error("bayesian sampling takes no early_termination policy", "early_termination")
    if any(severity == "error" for _p, _m, severity in reader.found) or objective is None or sampling is None:
        return None, reader.found
    return SweepSpec(
        search_space=space, objective=objective, sampling=sampling, limits=limits, early_termination=policy
    ), reader.found


def sweep_to_json(spec: SweepSpec) -> dict:
    return asdict(spec)


def sweep_from_json(d: dict) -> SweepSpec:
    policy = d.get("early_termination")
    return SweepSpec(
        search_space={k: Distribution(**v) for k, v in d["search_space"].items()},
        objective=Objective(**d["objective"]),
        sampling=Sampling(**d.get("sampling", {})),
        limits=SweepLimits(**d.get("limits", {})),
        early_termination=EarlyTermination(**policy) if policy else None,
    )


def sweep_yaml(spec: SweepSpec) -> dict:
    """The sweep keys as Azure ML writes them (`trial` is the caller's)."""
    space: dict[str, dict] = {}
    for name, dist in spec.search_space.items():
        space[name] = {"type": dist.type, **({"values": list(dist.values)} if dist.type == "choice" else dist.params)}
    sampling: dict[str, object] = {"type": spec.sampling.type}
    if spec.sampling.seed is not None:
        sampling["seed"] = spec.sampling.seed
    limits: dict[str, int] = {
        "max_total_trials": spec.limits.max_total_trials,
        "max_concurrent_trials": spec.limits.max_concurrent_trials,
    }
    if spec.limits.timeout_s is not None:
        limits["timeout"] = spec.limits.timeout_s
    if spec.limits.trial_timeout_s is not None:
        limits["trial_timeout"] = spec.limits.trial_timeout_s
    doc: dict[str, object] = {
        "search_space": space,
        "sampling_algorithm": sampling,
        "objective": {"primary_metric": spec.objective.primary_metric, "goal": spec.objective.goal},
        "limits": limits,
    }
    policy = spec.early_termination
    if policy is not None:
        et: dict[str, object] = {"type": policy.type}
        for key in POLICIES[policy.type]:
            value = getattr(policy, key)
            if value is not None and value is not False and not (key == "truncation_percentage" and not value):
                et[key] = value
        doc["early_termination"] = et
    return doc
