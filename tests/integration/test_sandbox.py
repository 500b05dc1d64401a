"""A step reaches only what is its own: a hostile step of another team's editor, run by a real
worker in the sandbox (runs/sandbox.py), tries everything it should not be able to do."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from pipelines_ui.models import Role
from runs import queues, reconciler, sandbox, services
from runs.artifacts import artifact_path
from runs.models import ComputeTarget, RunState, StepOutput, StepState, Transition
from tests.conftest import make_user
from tests.integration.conftest import pids_matching, staged_etc, wait_for
from tests.integration.test_execution import import_yaml, log_text, steps_of, wait_run
from tests.integration.test_faults import alive, start_run

pytestmark = pytest.mark.integration

# Every attempt prints one line `ATTEMPT <what> <blocked|REACHED> <detail>`; the step's own input
# and output must work, and it exits 0 only when they do.
ATTACK = r"""
import json, os, signal, socket, sys
from pathlib import Path

cfg = json.loads(Path("config.json").read_text())


def attempt(what, action):
    try:
        detail = action()
    except Exception as exc:
        print("ATTEMPT", what, "blocked", type(exc).__name__, str(exc)[:120])
    else:
        print("ATTEMPT", what, "REACHED", str(detail)[:120])


def read(path):
    return lambda: Path(path).read_bytes()[:40]


def write(path):
    return lambda: Path(path).write_text("owned")


def connect(host, port):
    def action():
        with socket.create_connection((host, port), timeout=3):
            return f"connected to {host}:{port}"
    return action


def push_job():
    import redis
    client = redis.Redis(host="127.0.0.1", port=cfg["redis_port"], socket_connect_timeout=3)
    return client.rpush("rq:queue:" + cfg["queue"], "evil")


def open_database():
    import psycopg
    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3) as conn:
        return conn.execute("select 1").fetchone()


def worker_environment():
    found = [key for key in cfg["worker_only_env"] if key in os.environ]
    if found:
        return found
    raise LookupError("none of the worker's variables")


if cfg["database_file"]:
    attempt("read-database-file", read(cfg["database_file"]))
attempt("read-secret-key", read(cfg["secret_key"]))
attempt("read-other-run-output", read(cfg["other_output"]))
attempt("list-artifact-store", lambda: os.listdir(cfg["artifact_store"]))


def other_runs_folders():
    own = "run-" + os.environ["STEPWISE_RUN_ID"]
    found = [name for name in os.listdir(cfg["workdir_root"]) if name.startswith("run-") and name != own]
    if found:
        return found
    raise LookupError("only its own run's folder")


attempt("list-other-runs-folders", other_runs_folders)
attempt("worker-environment", worker_environment)
attempt("worker-proc-environ", read(f"/proc/{cfg['worker_pid']}/environ"))
attempt("signal-worker", lambda: os.kill(cfg["worker_pid"], signal.SIGTERM))
for target in cfg["write_targets"]:
    attempt("write-" + target, write(target))
attempt("push-redis-job", push_job)
attempt("connect-redis", connect("127.0.0.1", cfg["redis_port"]))
attempt("open-postgresql", open_database)
for address in cfg["host_addresses"]:
    attempt("connect-redis-at-" + address, connect(address, cfg["redis_port"]))

attempt("write-dev", write("/dev/evil"))
attempt("make-device-node", lambda: os.mknod("/tmp/disk", 0o600 | 0o060000, os.makedev(8, 0)))
attempt("read-dev-mem", read("/dev/mem"))
attempt("become-root", lambda: os.setuid(0))


def devices():
    with open("/dev/null", "w") as null:
        null.write("discarded")
    with open("/dev/urandom", "rb") as urandom, open("/dev/zero", "rb") as zero:
        return len(urandom.read(16)), zero.read(4)


print("devices:", devices())
print("visible processes:", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
print("uid:", os.getuid(), "groups:", os.getgroups())
status = dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":\t" in line)
print("capabilities:", status["CapPrm"].strip(), status["CapEff"].strip(), "no_new_privs:", status["NoNewPrivs"])
data = Path(sys.argv[1], "value.txt").read_text()
Path(sys.argv[2], "result.txt").write_text("read " + data)
"""

PIPELINE = """
type: pipeline
inputs:
  raw: {type: uri_folder, path: ./data}
jobs:
  attack:
    type: command
    code: ./code
    command: python attack.py ${{inputs.raw}} ${{outputs.out}}
    inputs:
      raw: ${{parent.inputs.raw}}
    outputs:
      out: {type: uri_folder}
"""

VICTIM = """
type: pipeline
jobs:
  private:
    type: command
    command: echo team secret > ${{outputs.out}}/model.txt
    outputs:
      out: {type: uri_folder}
"""


def host_addresses() -> list[str]:
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    return [a for a in out if ":" not in a]


def redis_port() -> int:
    from urllib.parse import urlparse

    return urlparse(settings.REDIS_URL).port or 6379


def attempts(log: str) -> dict[str, str]:
    found = {}
    for line in log.splitlines():
        if line.startswith("ATTEMPT "):
            _, what, outcome, *_ = line.split(" ", 3) + [""]
            found[what] = outcome
    return found


def test_a_hostile_step_of_another_team_reaches_nothing_but_its_own_files(
    workers, alice, team, other_team, tmp_path, compute_target
):
    workers.extra_env["AWS_SECRET_ACCESS_KEY"] = "canary-" + uuid.uuid4().hex
    (worker,) = workers.start(1)
    victim_run = wait_run(services.run_create(version=import_yaml(tmp_path, VICTIM, alice, team), user=alice))
    assert victim_run.state == RunState.SUCCEEDED
    other_output = artifact_path(StepOutput.objects.get(step_run__run=victim_run).artifact) / "model.txt"
    assert other_output.read_text() == "team secret\n"
    # The store is the test session's: other tests' files are in it too.
    models_before = set(Path(settings.STEPWISE_ARTIFACTS).glob("**/model.txt"))

    mallory = make_user("mallory", other_team, Role.EDITOR)
    folder = tmp_path / "attack"
    (folder / "code").mkdir(parents=True)
    (folder / "data").mkdir()
    (folder / "data" / "value.txt").write_text("my own data")
    host_tmp_marker = Path("/tmp") / f"stepwise-escape-{uuid.uuid4().hex}"
    db = connection.settings_dict
    config = {
        "database_file": db["NAME"] if connection.vendor == "sqlite" else "",
        "secret_key": str(settings.VAR_DIR / "secret_key"),
        "other_output": str(other_output),
        "artifact_store": settings.STEPWISE_ARTIFACTS,
        "workdir_root": str(settings.STEPWISE_WORKDIR / queues.instance_id()),
        "worker_only_env": [
            "DATABASE_URL",
            "SECRET_KEY",
            "REDIS_URL",
            "AWS_SECRET_ACCESS_KEY",
            "DJANGO_SETTINGS_MODULE",
        ],
        "worker_pid": worker.pid,
        "write_targets": [
            str(Path(settings.STEPWISE_ARTIFACTS) / "evil"),
            str(settings.STEPWISE_WORKDIR / "evil"),
            str(settings.BASE_DIR / "evil"),
            str(settings.VAR_DIR / "evil"),
            str(Path(settings.STEPWISE_ARTIFACTS).parent / "evil"),
        ],
        "redis_port": redis_port(),
        "queue": compute_target.queue,
        "host_addresses": host_addresses(),
    }
    (folder / "code" / "attack.py").write_text(ATTACK + f"\nPath({str(host_tmp_marker)!r}).write_text('x')\n")
    (folder / "code" / "config.json").write_text(json.dumps(config))
    (folder / "pipeline.yml").write_text(PIPELINE)
    from pipelines_ui.services import pipeline_import

    version = pipeline_import(team=other_team, path=folder / "pipeline.yml", user=mallory, name="attack")
    run = wait_run(services.run_create(version=version, user=mallory))

    step = steps_of(run)["attack"]
    log = log_text(step)
    assert run.state == RunState.SUCCEEDED, (step.reason, log)
    outcomes = attempts(log)
    expected = {"read-secret-key", "read-other-run-output", "list-artifact-store", "list-other-runs-folders"}
    expected |= {"worker-environment", "worker-proc-environ", "signal-worker", "push-redis-job", "connect-redis"}
    expected |= {"open-postgresql"} | {f"write-{t}" for t in config["write_targets"]}
    expected |= {"write-dev", "make-device-node", "read-dev-mem", "become-root"}
    expected |= {"read-database-file"} if config["database_file"] else set()
    assert expected <= set(outcomes), log
    reached = {what: outcome for what, outcome in outcomes.items() if outcome != "blocked"}
    assert reached == {}, log
    # Its own input and output worked, as nobody, seeing only its own processes.
    result = artifact_path(StepOutput.objects.get(step_run=step).artifact) / "result.txt"
    assert result.read_text() == "read my own data"
    # No supplementary group but its own (chpst sets its gid as the one; setpriv clears them).
    uid, gid = settings.STEPWISE_SANDBOX_UID, settings.STEPWISE_SANDBOX_GID
    assert re.search(rf"^uid: {uid} groups: \[({gid})?\]$", log, re.MULTILINE), log
    assert "capabilities: 0000000000000000 0000000000000000 no_new_privs: 1" in log, log
    assert "devices: (16, b'\\x00\\x00\\x00\\x00')" in log, log
    assert "visible processes: [1, 2]" in log
    # The worker's own helpers (the steps' network) are not taken for what the step left running.
    assert "[stepwise] stopped" not in log
    # Nothing it wrote reached the host; the worker lived on.
    assert not host_tmp_marker.exists()
    assert not any(Path(t).exists() for t in config["write_targets"])
    assert worker.poll() is None
    assert set(Path(settings.STEPWISE_ARTIFACTS).glob("**/model.txt")) == models_before


NETWORK_PROBE = """
type: pipeline
jobs:
  probe:
    type: command
    command: >-
      python -c "import socket; print('interfaces:', sorted(n for _, n in socket.if_nameindex()))"
"""


OFFLINE_PROBE = """
type: pipeline
jobs:
  first:
    type: command
    command: >-
      python -c "import socket, sys; print('interfaces:', sorted(n for _, n in socket.if_nameindex()));
      socket.socket(socket.AF_UNIX).bind('\\\\0stepwise-probe'); print('bound');
      open(sys.argv[1], 'w').write('x')" ${{outputs.done}}
    outputs:
      done: {type: uri_file}
  second:
    type: command
    command: >-
      python -c "import socket, sys; s = socket.socket();
      print('redis:', 'refused' if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) else 'reached');
      socket.socket(socket.AF_UNIX).bind('\\\\0stepwise-probe'); print('bound again')"
      ${{inputs.port}} ${{inputs.after}}
    inputs:
      port: REDIS_PORT
      after: ${{parent.jobs.first.outputs.done}}
"""


def test_a_target_without_network_gives_its_steps_only_their_own_loopback(workers, alice, team, tmp_path):
    """One worker's steps share its offline namespace one after another: nothing of the first
    (an abstract socket's name) is left to the second, and the host's Redis is out of reach."""
    ComputeTarget.objects.update(network=False)
    workers.start(1)
    port = redis.Redis.from_url(settings.REDIS_URL).connection_pool.connection_kwargs.get("port", 6379)
    text = OFFLINE_PROBE.replace("REDIS_PORT", str(port))
    run = wait_run(services.run_create(version=import_yaml(tmp_path, text, alice, team), user=alice))
    assert run.state == RunState.SUCCEEDED, run.reason
    steps = steps_of(run)
    first = log_text(steps["first"])
    assert "interfaces: ['lo']" in first and "bound" in first, first
    second = log_text(steps["second"])
    assert "redis: refused" in second and "bound again" in second, second


def test_a_target_with_network_gives_its_steps_an_interface_of_their_own(workers, alice, team, tmp_path):
    workers.start(1)
    run = wait_run(services.run_create(version=import_yaml(tmp_path, NETWORK_PROBE, alice, team), user=alice))
    assert run.state == RunState.SUCCEEDED
    # pasta's interface in the worker's namespace: outbound traffic, but no route to the host's loopback.
    log = log_text(steps_of(run)["probe"])
    assert "interfaces: ['lo']" not in log and "'lo'" in log, log


@pytest.mark.isolation("none")
def test_isolation_none_runs_the_step_as_the_worker(workers, alice, team, tmp_path):
    secret = tmp_path / "readable-by-the-worker.txt"
    secret.write_text("the worker's file")
    secret.chmod(0o600)
    workers.start(1)
    yaml_text = f"""
        type: pipeline
        jobs:
          plain:
            type: command
            command: cat {secret}
        """
    run = wait_run(services.run_create(version=import_yaml(tmp_path, yaml_text, alice, team), user=alice))
    assert run.state == RunState.SUCCEEDED
    assert "the worker's file" in log_text(steps_of(run)["plain"])


def test_a_sandboxed_step_dies_with_its_sigkilled_worker_and_is_failed_as_lost(workers, alice, team, tmp_path, marker):
    (worker,) = workers.start(1)
    run = start_run(
        tmp_path,
        f"type: pipeline\njobs:\n  long:\n    type: command\n    command: exec -a {marker} sleep 600\n",
        alice,
        team,
    )
    wait_for(lambda: pids_matching(marker), message="the step's process")
    (step_pid,) = (int(pid) for pid in pids_matching(marker))
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    # No reconciler and no other worker: the sandbox itself ends with its worker.
    wait_for(lambda: not alive(step_pid), timeout=10, message="the step to die with its worker")

    def lost():
        reconciler.tick()
        return Transition.objects.filter(step_run__run=run, new=StepState.FAILED).exists()

    wait_for(lost, timeout=60, interval=0.5, message="the reconciler to fail the lost attempt")
    step = steps_of(run)["long"]
    assert step.state == StepState.FAILED and "worker lost" in step.reason


def test_a_worker_readies_its_steps_sandbox_before_it_takes_a_step(workers, alice, team, tmp_path):
    from runs import sandbox

    (worker,) = workers.start(1)
    workdir = Path(settings.STEPWISE_WORKDIR)
    # No step has run: the worker made its copy of /etc (and, as root, the steps' devices and
    # network namespace) as it started, so its first step does not wait for them.
    wait_for(lambda: staged_etc(worker.pid), message="the worker's copy of /etc")
    if sandbox.running_as_root():
        wait_for(lambda: list(workdir.glob(f".dev-{worker.pid}-*")), message="the worker's /dev")
        namespaces = Path("/run/netns")
        wait_for(lambda: list(namespaces.glob(f"stepwise-{worker.pid}-*")), message="the steps' network namespace")
    run = start_run(
        tmp_path, "type: pipeline\njobs:\n  step:\n    type: command\n    command: echo ready\n", alice, team
    )
    assert wait_run(run, timeout=30).state == RunState.SUCCEEDED
    assert "ready" in log_text(steps_of(run)["step"])


def test_a_host_without_bubblewrap_fails_the_step_with_what_to_do(workers, alice, team, tmp_path):
    # A PATH without bwrap, as on a host where bubblewrap is not installed.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sh", "python3", "setpriv", "chpst", "nsenter", "ip", "pasta", "env"):
        found = subprocess.run(["which", tool], capture_output=True, text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    workers.extra_env["PATH"] = str(bin_dir)
    workers.start(1)
    yaml_text = "type: pipeline\njobs:\n  any:\n    type: command\n    command: echo never\n"
    run = wait_run(services.run_create(version=import_yaml(tmp_path, yaml_text, alice, team), user=alice))
    step = steps_of(run)["any"]
    assert step.state == StepState.FAILED
    assert "bubblewrap" in step.reason and "isolation" in step.reason, step.reason
    assert "never" not in log_text(step)


def test_the_sandbox_mounts_nothing_of_the_instance_but_the_steps_own_folder(tmp_path, monkeypatch):
    from runs import sandbox

    # A checkout in /tmp, as `git clone` into /tmp then `make run` makes it.
    venv = tmp_path / "checkout" / ".venv"
    monkeypatch.setattr(sandbox, "python_roots", lambda: [venv])
    workdir = settings.STEPWISE_WORKDIR / "run-1" / "step-1"
    (workdir / "code").mkdir(parents=True)
    data = Path(settings.STEPWISE_ARTIFACTS) / "ab" / "cd"
    argv, _netns = sandbox.argv(["true"], sandbox.Sandbox(workdir=workdir, cwd=workdir / "code", read_only=[data]))
    sources = {argv[i + 1] for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind", "--ro-bind-try")}
    instance = {settings.BASE_DIR, settings.VAR_DIR, Path(settings.STEPWISE_ARTIFACTS), settings.STEPWISE_WORKDIR}
    assert not {str(p) for p in instance} & sources
    assert "/" not in sources and "/etc" not in sources and "/home" not in sources and "/root" not in sources
    assert str(workdir) in sources and str(data) in sources and str(venv) in sources
    assert {"--unshare-pid", "--unshare-ipc", "--die-with-parent"} <= set(argv)
    # The step's own /tmp is mounted before anything under /tmp (a checkout or virtualenv there too).
    destinations = [argv[i + 2] for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind", "--ro-bind-try")]
    under_tmp = [i for i, dest in enumerate(destinations) if dest.startswith("/tmp/")]
    assert all(destinations.index("/tmp") < i for i in under_tmp)


def test_the_step_environment_is_an_allow_list(settings, monkeypatch, tmp_path):
    from runs.executor import step_environment

    monkeypatch.setenv("SECRET_KEY", "server-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-key")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    settings.STEPWISE_STEP_ENV_PASSTHROUGH = ["HTTP_PROXY"]
    env = step_environment(
        workdir=tmp_path,
        declared={"MY_VAR": "1", "STEPWISE_RUN_ID": "forged", "PATH": "/opt/tool/bin"},
        stepwise={"STEPWISE_RUN_ID": "7"},
    )
    assert "SECRET_KEY" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["HTTP_PROXY"] == "http://proxy:3128" and env["LANG"] == "de_DE.UTF-8"
    assert env["MY_VAR"] == "1" and env["STEPWISE_RUN_ID"] == "7"
    assert env["HOME"] == str(tmp_path / "home") and env["TMPDIR"] == str(tmp_path / "tmp")
    assert env["PATH"].endswith("/opt/tool/bin")


def test_a_root_worker_stages_the_steps_devices_once(settings, tmp_path, monkeypatch):
    from runs import sandbox

    settings.STEPWISE_WORKDIR = tmp_path
    monkeypatch.setattr(sandbox, "_dev", None)
    args = sandbox._dev_args()
    assert args[0] == "--dev-bind" and args[2] == "/dev"
    folder = Path(args[1])
    assert folder.parent == tmp_path and sandbox._dev_args() == args  # made once per worker
    for name, (major, minor) in sandbox.DEVICES.items():
        mode = (folder / name).lstat()
        assert stat.S_ISCHR(mode.st_mode) and os.major(mode.st_rdev) == major and os.minor(mode.st_rdev) == minor
        assert stat.S_IMODE(mode.st_mode) == 0o666
    # No disk, no memory, no kernel interface a step could open; the folder itself is root's.
    assert {p.name for p in folder.iterdir()} == {*sandbox.DEVICES, *sandbox.DEV_LINKS, "shm", "pts"}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755 and folder.stat().st_uid == os.getuid()
    sandbox.stop()
    assert not folder.exists()


def test_steps_get_bubblewraps_dev_where_no_device_can_be_made(settings, tmp_path, monkeypatch):
    from runs import sandbox

    settings.STEPWISE_WORKDIR = tmp_path
    monkeypatch.setattr(sandbox, "_dev", None)

    def refused(*args):
        raise PermissionError("Operation not permitted")

    monkeypatch.setattr(sandbox.os, "mknod", refused)
    assert sandbox._dev_args() == ["--dev", "/dev"]
    assert not list(tmp_path.glob(".dev-*"))


def test_the_staged_folders_of_workers_that_are_gone_are_removed(settings, tmp_path):
    from runs import sandbox

    settings.STEPWISE_WORKDIR = tmp_path
    dead = subprocess.Popen(["true"])
    dead.wait()
    gone = tmp_path / f".dev-{dead.pid}-1"
    living = tmp_path / f".etc-{os.getppid()}-1"
    for folder in (gone, living):
        folder.mkdir()
    new = sandbox._new_staged_folder("dev")
    assert not gone.exists() and living.exists()
    assert new.name.startswith(f".dev-{os.getpid()}-") and not new.exists()
    # The copy of /etc on its tmpfs, named after its kind with dashes of its own.
    shm = tmp_path / "shm"
    gone, living = shm / f".stepwise-etc-{dead.pid}-1", shm / f".stepwise-etc-{os.getppid()}-1"
    for folder in (gone, living):
        folder.mkdir(parents=True)
    new = sandbox._new_staged_folder("stepwise-etc", root=shm)
    assert not gone.exists() and living.exists()
    assert new.parent == shm and new.name.startswith(f".stepwise-etc-{os.getpid()}-")


def test_the_copy_of_etc_is_made_on_the_tmpfs_or_else_in_the_work_folder(settings, tmp_path, monkeypatch):
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    tmpfs = tmp_path / "shm"
    tmpfs.mkdir()
    for staging, expected in ((tmpfs, tmpfs), (tmp_path / "absent", tmp_path / "work")):
        monkeypatch.setattr(sandbox, "ETC_STAGING", staging)
        monkeypatch.setattr(sandbox, "_etc", None)
        folder = sandbox._staged_etc()
        assert folder.parent == expected
        assert (folder / "passwd").read_bytes() == Path("/etc/passwd").read_bytes()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_a_root_workers_step_is_handed_to_its_uid_with_no_capability(monkeypatch):
    from runs import sandbox

    monkeypatch.setattr(sandbox, "_chpst", lambda: "/usr/bin/chpst")
    args = sandbox._drop_args(65534, 65533)
    # bwrap keeps only what chpst needs to change uid, which the change itself then clears.
    assert args[: args.index("--")] == ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    assert args[args.index("--") + 1 :] == ["/usr/bin/chpst", "-u", ":65534:65533"]
    monkeypatch.setattr(sandbox, "_chpst", lambda: None)
    args = sandbox._drop_args(65534, 65533)
    assert args[:5] == ["--", "setpriv", "--reuid=65534", "--regid=65533", "--clear-groups"]
    assert {"--inh-caps=-all", "--bounding-set=-all"} <= set(args)


PROBE_IDS = """
from pathlib import Path
import os
status = dict(line.split(":\\t", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":\\t" in line)
caps = [status[name].strip() for name in ("CapPrm", "CapEff", "CapAmb", "CapInh", "NoNewPrivs")]
print(os.getuid(), os.getgid(), os.getgroups(), *caps)
"""


@pytest.mark.parametrize("tool", ["chpst", "setpriv"])
def test_either_uid_tool_leaves_the_step_nobody_with_no_capability(tool, settings, tmp_path, monkeypatch):
    from runs import sandbox

    if not sandbox.running_as_root():
        pytest.fail("the sandbox tests run as root, where steps are handed to another uid")
    monkeypatch.setattr(sandbox, "_chpst", (lambda: shutil.which("chpst")) if tool == "chpst" else (lambda: None))
    workdir = tmp_path / "step"
    for sub in ("code", "tmp"):
        (workdir / sub).mkdir(parents=True)
    workdir.chmod(0o755)
    step = sandbox.Sandbox(workdir=workdir, cwd=workdir / "code", network=False)
    process = sandbox.start(
        ["python3", "-c", PROBE_IDS], step, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out, _ = process.communicate(timeout=30)
    uid, gid = settings.STEPWISE_SANDBOX_UID, settings.STEPWISE_SANDBOX_GID
    none = "0000000000000000"
    # chpst keeps the two capabilities bwrap left it as inheritable ones: with nothing permitted
    # and no_new_privs, no exec can turn them into a capability.
    groups, inheritable = (f"[{gid}]", "00000000000000c0") if tool == "chpst" else ("[]", none)
    assert out.strip() == f"{uid} {gid} {groups} {none} {none} {none} {inheritable} 1", out


PROBE_DEVICES = """
import os, stat, sys
for path in sys.argv[1:]:
    try:
        mode = os.stat(path)
    except OSError as exc:
        print(path, "absent")
        continue
    try:
        os.close(os.open(path, os.O_RDWR))
        opened = "opened"
    except OSError as exc:
        opened = "refused"
    print(path, oct(stat.S_IMODE(mode.st_mode)), os.major(mode.st_rdev), os.minor(mode.st_rdev), opened)
"""


@pytest.fixture
def host_devices():
    """Two device nodes of the host's /dev, made for the test: a null device anyone may open and
    a zero device only root may (a host's own, /dev/fuse or a GPU's, vary from host to host)."""
    tag = f"/dev/stepwise-test-{os.getpid()}"
    nodes = {f"{tag}-anyone": (0o666, 3), f"{tag}-root": (0o600, 5)}
    for path, (mode, minor) in nodes.items():
        os.mknod(path, stat.S_IFCHR | mode, os.makedev(1, minor))
        os.chmod(path, mode)  # mknod applies the umask
    yield tag
    for path in nodes:
        os.unlink(path)


@pytest.mark.parametrize("staged", [True, False], ids=["staged-dev", "bwrap-dev"])
def test_the_devices_a_host_names_reach_its_steps_with_the_hosts_permissions(
    staged, host_devices, settings, tmp_path, monkeypatch
):
    """As a GPU host names /dev/nvidia*: here a device anyone may open and one only root may."""
    from runs import sandbox

    settings.STEPWISE_WORKDIR = tmp_path
    settings.STEPWISE_SANDBOX_DEVICES = [f"{host_devices}-*", "/dev/no-such-device*"]
    monkeypatch.setattr(sandbox, "_dev", None)
    if not staged:
        monkeypatch.setattr(sandbox, "_mknod", lambda *args: (_ for _ in ()).throw(PermissionError("refused")))
    workdir = tmp_path / "step"
    for sub in ("code", "tmp"):
        (workdir / sub).mkdir(parents=True)
    workdir.chmod(0o755)
    step = sandbox.Sandbox(workdir=workdir, cwd=workdir / "code", network=False)
    probed = [f"{host_devices}-anyone", f"{host_devices}-root", "/dev/kvm"]
    try:
        process = sandbox.start(
            ["python3", "-c", PROBE_DEVICES, *probed],
            step,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out, _ = process.communicate(timeout=30)
    finally:
        sandbox.stop()
    assert out.splitlines() == [
        f"{host_devices}-anyone 0o666 1 3 opened",
        f"{host_devices}-root 0o600 1 5 refused",  # the step is nobody: the host's permissions hold
        "/dev/kvm absent",
    ], out


def test_the_missing_parents_of_mount_points_are_made_enterable_once_each_top_down():
    from runs import sandbox

    mounts = [Path("/srv/data/a"), Path("/srv/data/b/c"), Path("/usr/lib/x"), Path("/opt")]
    args = sandbox._parents_args(mounts, existing=["/usr"])
    # bwrap would make them 0700, which the step's uid could not enter; what exists stays as it is.
    assert args == [a for d in ["/srv", "/srv/data", "/srv/data/b"] for a in ("--perms", "0755", "--dir", d)]


def test_the_step_sdk_is_one_read_only_copy_with_its_links_followed(settings, tmp_path, monkeypatch):
    from runs import sandbox
    from runs.executor import DISTRIBUTION_LAUNCHER, SDK_DIR, STEPWISE_PACKAGE_DIR

    settings.STEPWISE_WORKDIR = tmp_path
    monkeypatch.setattr(sandbox, "_copies", {})
    workdir = tmp_path / "run-1" / "step-1"
    (workdir / "code").mkdir(parents=True)
    box = sandbox.Sandbox(workdir=workdir, cwd=workdir / "code", sdk=SDK_DIR)

    def sdk_mounts() -> list[tuple[str, str]]:
        argv, _netns = sandbox.argv(["true"], box)
        binds = [(argv[i + 1], argv[i + 2]) for i, arg in enumerate(argv) if arg in ("--bind", "--ro-bind")]
        return [(source, dest) for source, dest in binds if dest.startswith(str(SDK_DIR.parent))]

    # One mount, read-only, in the SDK's place: not the package and the launcher its links point at.
    [(source, dest)] = sdk_mounts()
    assert dest == str(SDK_DIR) and Path(source).parent == tmp_path
    copy = Path(source)
    assert (copy / "stepwise").is_dir() and not (copy / "stepwise").is_symlink()
    assert (copy / "stepwise" / "tracking.py").read_bytes() == (STEPWISE_PACKAGE_DIR / "tracking.py").read_bytes()
    launcher = copy / DISTRIBUTION_LAUNCHER.name
    assert not launcher.is_symlink() and launcher.read_bytes() == DISTRIBUTION_LAUNCHER.read_bytes()
    assert not list(copy.rglob("__pycache__"))
    # Made once per worker; made again when it is gone (`make clean`), and removed as the worker stops.
    assert sdk_mounts() == [(source, dest)]
    shutil.rmtree(copy)
    [(again, _dest)] = sdk_mounts()
    assert Path(again).is_dir() and again != source
    sandbox.stop()
    assert not Path(again).exists()


def test_a_step_is_born_in_the_steps_network_namespace_and_its_worker_thread_stays_in_its_own(tmp_path, settings):
    settings.STEPWISE_WORKDIR = tmp_path / "work"
    if sandbox.steps_share_host_network() or sandbox.network_namespace(outbound=True) is None:
        pytest.fail("this host cannot make the steps' network namespace (root, ip and pasta are needed)")
    workdir = tmp_path / "work" / "step"
    (workdir / "code").mkdir(parents=True)
    sandbox.prepare_workdir(workdir, hand_over=True)
    box = sandbox.Sandbox(workdir=workdir, cwd=workdir / "code")
    before = os.readlink("/proc/thread-self/ns/net")

    proc = sandbox.start(["readlink", "/proc/self/ns/net"], box, stdout=subprocess.PIPE, text=True)
    inside = proc.communicate(timeout=30)[0].strip()

    assert proc.returncode == 0
    assert inside == f"net:[{os.stat(sandbox.network_namespace(outbound=True)).st_ino}]" != before
    assert os.readlink("/proc/thread-self/ns/net") == before
    # A connection made now, from this thread, still reaches the host's loopback.
    assert redis.Redis.from_url(settings.REDIS_URL).ping()


def test_a_spare_working_folder_is_made_ahead_and_renamed_into_place_once(settings, tmp_path, monkeypatch):
    settings.STEPWISE_WORKDIR = tmp_path
    monkeypatch.setattr(sandbox, "_spare", None)
    sandbox.make_spare()
    (spare,) = tmp_path.glob(f".spare-{os.getpid()}-*")
    sandbox.make_spare()
    assert list(tmp_path.glob(".spare-*")) == [spare], "one waits at a time"

    workdir = tmp_path / "target" / "run-1" / "a-1"
    assert sandbox.take_spare(workdir)

    assert sorted(p.name for p in workdir.iterdir()) == sorted(sandbox.SPARE_SKELETON)
    assert not spare.exists()
    assert not sandbox.take_spare(tmp_path / "target" / "run-1" / "b-1"), "taken already"


def test_a_spare_that_cannot_move_is_dropped_and_the_caller_makes_its_folder(settings, tmp_path, monkeypatch):
    settings.STEPWISE_WORKDIR = tmp_path
    monkeypatch.setattr(sandbox, "_spare", None)
    sandbox.make_spare()
    (spare,) = tmp_path.glob(".spare-*")
    (tmp_path / "a-file").write_text("")

    assert not sandbox.take_spare(tmp_path / "a-file" / "a-1")
    assert not spare.exists()

    # One made for another work folder (the setting changed) is not used there either.
    sandbox.make_spare()
    (spare,) = tmp_path.glob(".spare-*")
    settings.STEPWISE_WORKDIR = tmp_path / "elsewhere"
    assert not sandbox.take_spare(tmp_path / "elsewhere" / "a-1") and not spare.exists()


def test_a_workers_spare_folder_goes_when_it_stops(settings, tmp_path, monkeypatch):
    settings.STEPWISE_WORKDIR = tmp_path
    monkeypatch.setattr(sandbox, "_spare", None)
    sandbox.make_spare()
    assert list(tmp_path.glob(".spare-*"))
    sandbox.stop()
    assert not list(tmp_path.glob(".spare-*"))
