"""The sandbox a step runs in: bubblewrap, as Flatpak uses it.

A step is any team's code, so it sees only what is its own: its working folder (code,
outputs, a private HOME and /tmp), its inputs read-only, the Python environment it runs in
and the system's read-only files. Not the database, `var/`, the secret key, the artifact
store as a whole, other runs' folders or the worker's processes (new mount, PID, IPC and
UTS namespaces). A worker running as root hands the step to an unprivileged uid.

Network: with the compute target's `network` on, steps of a root worker share one network
namespace per worker, outbound through `pasta` (Debian's passt) with the host's loopback
unmapped, so Redis, PostgreSQL and the app's own ports on 127.0.0.1 are out of reach; with
it off, a namespace with nothing but its own loopback. Where no such namespace can be made
(a non-root worker, no pasta), steps share the host's network: the services on it must then
require credentials, and `serve` says so loudly.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from runs import processes
from runs.processes import start_time

log = logging.getLogger(__name__)

# The system's read-only files a program may need; nothing of /etc that is the instance's own.
ETC_ALLOWED = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "crypto-policies",
    "debian_version",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki",
    "protocols",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
)
# Top-level system folders: bound read-only, or re-created as the symlinks they are (merged /usr).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt")
# What a step finds when it lists the CPUs and cgroup limits (numpy, joblib, torch read them).
SYS_ALLOWED = ("/sys/devices/system/cpu", "/sys/fs/cgroup")
NETNS_PREFIX = "stepwise-"
NETNS_READY_S = 5.0


class SandboxError(Exception):
    """The sandbox cannot start here: the step fails with this message."""


@dataclass
class Sandbox:
    """What one step may see, beyond the system: built by the executor, turned into argv here."""

    workdir: Path
    cwd: Path
    read_only: list[Path] = field(default_factory=list)
    network: bool = True
    # No network at all, in a namespace of its own rather than the worker's shared one: for a
    # long-lived process (a model's scorer), whose start-up cost does not matter.
    isolated_network: bool = False
    # A folder of the server's that steps import from (the step SDK), seen read-only in its place
    # with its links followed (see _staged_copy).
    sdk: Path | None = None


def running_as_root() -> bool:
    """Root of the host, not of a user namespace (a rootless container), where other uids do not exist."""
    return os.geteuid() == 0 and _uid_mapped(settings.STEPWISE_SANDBOX_UID)


@functools.cache  # a process's uid map is written once, before it runs
def _uid_mapped(uid: int) -> bool:
    try:
        lines = Path("/proc/self/uid_map").read_text().splitlines()
    except OSError:
        return True
    for line in lines:
        inside, _outside, count = (int(part) for part in line.split())
        if inside <= uid < inside + count:
            return True
    return False


def step_uid() -> tuple[int, int] | None:
    """The unprivileged uid and gid that steps of a root worker run as; None when not root."""
    if not running_as_root():
        return None
    return settings.STEPWISE_SANDBOX_UID, settings.STEPWISE_SANDBOX_GID


_bwrap_path: str | None = None


def _bwrap() -> str:
    """bwrap's path, looked up until found (then kept: a PATH search cost each step 0.1 ms)."""
    global _bwrap_path
    if _bwrap_path is None:
        _bwrap_path = shutil.which("bwrap")
    if _bwrap_path is None:
        raise SandboxError(
            "bubblewrap (bwrap) is not installed on this worker's host: install it (apt-get install bubblewrap), "
            "or set this compute target's isolation to `none` (single-user installs only)"
        )
    return _bwrap_path


@functools.cache
def check() -> None:
    """Start one empty sandbox, once per process: a clear error when the kernel refuses."""
    argv = [_bwrap(), "--ro-bind", "/", "/", "--unshare-pid", "--unshare-ipc"]
    if not running_as_root():
        argv.append("--unshare-user")
    result = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise SandboxError(
            f"the step sandbox cannot start on this host: {result.stderr.strip() or 'bwrap failed'}. "
            "Unprivileged user namespaces may be off (sysctl kernel.unprivileged_userns_clone=1, "
            "user.max_user_namespaces > 0), or run the worker as root; or set this compute target's "
            "isolation to `none` (single-user installs only)"
        )


@functools.cache
def python_roots() -> tuple[Path, ...]:
    """The Python environment steps run in (the worker's own), read-only: it does not move."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    return tuple(sorted(p for p in roots if not any(p.is_relative_to(d) for d in ("/usr", "/bin", "/lib"))))


def _system_args() -> list[str]:
    args = list(_system_dirs_args())
    args += ["--ro-bind", str(_staged_etc()), "/etc"]
    for path in SYS_ALLOWED:
        args += ["--ro-bind-try", path, path]
    return args


@functools.cache  # the host's top folders (/usr, the /bin link...) do not change under a worker
def _system_dirs_args() -> tuple[str, ...]:
    args: list[str] = []
    for top in SYSTEM_DIRS:
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    return tuple(args)


# Files of /etc that change while a worker lives (DHCP, an added user): the staged copy follows them.
ETC_WATCHED = ("resolv.conf", "hosts", "passwd", "group")
# Where that copy is made: a tmpfs (the host's shared memory). Its 700-odd links (/etc/ssl/certs)
# took each worker half a second to make on the bench machine's disk as it started.
ETC_STAGING = Path("/dev/shm")
_etc_lock = threading.Lock()
_etc: tuple[Path, tuple[float, ...]] | None = None


def _staged_etc() -> Path:
    """A copy of the allowed part of /etc, made once per worker and mounted as the step's /etc:
    one mount instead of one per entry, which would cost each step a few milliseconds."""
    global _etc
    stamp = tuple(_mtime(Path("/etc", name)) for name in ETC_WATCHED)
    with _etc_lock:
        if _etc is not None and _etc[1] == stamp and _etc[0].is_dir():
            return _etc[0]
        folder = _new_etc_folder()
        for name in ETC_ALLOWED:
            source = Path("/etc", name)
            try:
                if source.is_dir() and not source.is_symlink():
                    shutil.copytree(source, folder / name, symlinks=True)
                else:
                    shutil.copy2(source, folder / name, follow_symlinks=False)
            except OSError:
                continue  # absent here, or unreadable: the step does without it
        folder.chmod(0o755)
        if _etc is not None:
            shutil.rmtree(_etc[0], ignore_errors=True)
        _etc = (folder, stamp)
        return folder


def _new_etc_folder() -> Path:
    """An empty folder for the copy of /etc: on ETC_STAGING's tmpfs, else in the work folder."""
    if ETC_STAGING.is_dir():
        folder = _new_staged_folder("stepwise-etc", root=ETC_STAGING)
        try:
            folder.mkdir(mode=0o755)
            return folder
        except OSError as exc:
            log.debug("the copy of /etc goes to the work folder: %s", exc)
    folder = _new_staged_folder("etc")
    folder.mkdir(parents=True, mode=0o755)
    return folder


# The devices bwrap's --dev gives a step, as (major, minor), and its links; no pts: a step gets no pseudo-terminal.
DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}
DEV_LINKS = {
    "fd": "/proc/self/fd",
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "core": "/proc/kcore",
}
_dev_lock = threading.Lock()
_dev: list[str] | None = None


def _dev_args() -> list[str]:
    """The step's /dev: a folder of device nodes made once per worker and bound as a whole.

    bwrap's own --dev binds each device and mounts a devpts per step, 0.45 ms of each step's
    start (`make bench`). Where nodes cannot be made (a worker that is not root, a work folder
    on a nodev file system) the step gets --dev.
    """
    global _dev
    with _dev_lock:
        if _dev is None or (_dev[0] == "--dev-bind" and not Path(_dev[1]).is_dir()):
            _dev = _staged_dev()
        return list(_dev)


def _staged_dev() -> list[str]:
    folder = _new_staged_folder("dev")
    extra = configured_devices()
    try:
        folder.mkdir(parents=True, mode=0o755)
        if os.statvfs(folder).f_flag & os.ST_NODEV:
            raise OSError("the work folder is on a nodev file system")
        for name, (major, minor) in DEVICES.items():
            _mknod(folder / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        for name, target in DEV_LINKS.items():
            os.symlink(target, folder / name)
        for name in ("shm", "pts"):
            (folder / name).mkdir()
        for device in extra:
            node = device.stat()
            copy = folder / device.relative_to("/dev")
            copy.parent.mkdir(parents=True, exist_ok=True)
            _mknod(copy, node.st_mode, node.st_rdev)  # with the host's permissions: the GPU's group
            os.chown(copy, node.st_uid, node.st_gid)
        folder.chmod(0o755)
    except OSError as exc:
        log.debug("steps get bwrap's --dev: %s", exc)
        shutil.rmtree(folder, ignore_errors=True)
        return ["--dev", "/dev", *(arg for d in extra for arg in ("--dev-bind", str(d), str(d)))]
    return ["--dev-bind", str(folder), "/dev"]


def _mknod(path: Path, mode: int, device: int) -> None:
    os.mknod(path, mode, device)
    os.chmod(path, stat.S_IMODE(mode))  # mknod applies the umask


def configured_devices() -> list[Path]:
    """The host's devices that STEPWISE_SANDBOX_DEVICES names (e.g. /dev/nvidia*), that exist."""
    found: set[Path] = set()
    for pattern in settings.STEPWISE_SANDBOX_DEVICES:
        for match in glob.glob(pattern):
            path = Path(match)
            try:
                kind = path.stat().st_mode  # a link (/dev/dri/by-path/...) is its device
            except OSError:
                continue
            if (stat.S_ISCHR(kind) or stat.S_ISBLK(kind)) and path.resolve().is_relative_to("/dev"):
                found.add(path)
    return sorted(found)


def _new_staged_folder(kind: str, root: Path | None = None) -> Path:
    """A name for this worker's copy of /etc or /dev (or another `kind`) in `root` (the work
    folder by default); those of workers that are gone go."""
    root = Path(settings.STEPWISE_WORKDIR) if root is None else root
    prefix = f".{kind}-"
    for old in root.glob(f"{prefix}*"):
        pid = old.name[len(prefix) :].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path("/proc", pid).exists():
            shutil.rmtree(old, ignore_errors=True)
    return root / f"{prefix}{os.getpid()}-{time.monotonic_ns()}"


_copies_lock = threading.Lock()
_copies: dict[Path, Path] = {}


def _staged_copy(source: Path) -> Path:
    """A copy of `source` with its links followed, made once per worker and mounted in its place.

    The step SDK is a folder of links (to the `stepwise` package, to the distribution launcher):
    bound as it is, each link's target took a mount of its own, about half a millisecond each of
    every step's start (`make bench`). The copy is the worker's own code, as it was when the worker started.
    """
    with _copies_lock:
        folder = _copies.get(source)
        if folder is not None and folder.is_dir():
            return folder
        folder = _new_staged_folder("sdk")
        shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__"))
        folder.chmod(0o755)
        if source in _copies:
            shutil.rmtree(_copies[source], ignore_errors=True)
        _copies[source] = folder
        return folder


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# A step's working folder as `prepare` starts it, made ahead (`make_spare`) while the step before
# runs: each mkdir on the bench machine's disk costs 0.1 to 0.3 ms, and a step needs five.
SPARE_SKELETON = ("code", "outputs", "home", "tmp")
_spare_lock = threading.Lock()
_spare: Path | None = None


def make_spare() -> None:
    """Make the skeleton of this worker's next working folder, unless one is waiting."""
    global _spare
    with _spare_lock:
        if _spare is not None and _spare.parent == Path(settings.STEPWISE_WORKDIR) and _spare.is_dir():
            return
        if _spare is not None:
            shutil.rmtree(_spare, ignore_errors=True)
        folder = _new_staged_folder("spare")
        try:
            folder.mkdir(parents=True)
            for sub in SPARE_SKELETON:
                (folder / sub).mkdir()
        except OSError as exc:
            log.debug("no spare working folder: %s", exc)
            shutil.rmtree(folder, ignore_errors=True)
            return
        _spare = folder


def take_spare(workdir: Path) -> bool:
    """Rename the spare skeleton to `workdir`, which must not exist; False when there is none
    (or it cannot move there: another file system), and the caller makes the folder itself."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is None:
        return False
    try:
        if spare.parent != Path(settings.STEPWISE_WORKDIR):
            raise OSError("it was made for another work folder")
        workdir.parent.mkdir(parents=True, exist_ok=True)
        os.rename(spare, workdir)
    except OSError as exc:
        log.debug("the spare working folder cannot move to %s: %s", workdir, exc)
        shutil.rmtree(spare, ignore_errors=True)
        return False
    return True


def prepare_workdir(workdir: Path, *, hand_over: bool) -> None:
    """Make the step's HOME and /tmp; with `hand_over`, give its folder to the uid it runs as."""
    for sub in ("home", "tmp"):
        (workdir / sub).mkdir(exist_ok=True)
    ids = step_uid() if hand_over else None
    if ids is None:
        return
    uid, gid = ids
    os.chown(workdir, uid, gid)
    for dirpath, dirnames, filenames in os.walk(workdir):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _parents_args(paths: list[Path], existing: list[str]) -> list[str]:
    """`--dir` for the missing parents of mount points, mode 0755: bwrap would make them 0700,
    which the step's uid cannot enter (they are empty folders of the sandbox, or of its /tmp)."""
    made: set[str] = set()
    args: list[str] = []
    for path in paths:
        # Each parent below /, top down, as strings: pathlib's `parents` cost a step 0.1 ms here.
        parts = str(path).split("/")[1:-1]
        for depth in range(1, len(parts) + 1):
            name = "/" + "/".join(parts[:depth])
            if name in made or any(name == e or name.startswith(e + "/") for e in existing):
                continue
            made.add(name)
            args += ["--perms", "0755", "--dir", name]
    return args


def start(command: list[str], sandbox: Sandbox, **popen) -> subprocess.Popen:
    """Start `command` inside the sandbox (`popen`: subprocess.Popen's other arguments)."""
    args, netns = argv(command, sandbox)
    if netns is None:
        return subprocess.Popen(args, **popen)
    return _spawner(netns).popen(args, **popen)


def argv(command: list[str], sandbox: Sandbox) -> tuple[list[str], str | None]:
    """The command line that runs `command` inside the sandbox, and the network namespace it
    must start in (None: the one it is started from)."""
    check()
    roots = [Path(root) for root in python_roots()]
    args = [_bwrap(), *_system_args()]
    args += ["--proc", "/proc", *_dev_args(), "--perms", "1777", "--tmpfs", "/dev/shm"]
    # The step's /tmp is on disk in its own folder (datasets do not fit in a tmpfs). Bound before
    # everything else under it: a checkout, a virtualenv or the worker's folders may live in /tmp.
    args += ["--bind", str(sandbox.workdir / "tmp"), "/tmp"]
    shared = [Path(p) for p in settings.STEPWISE_SANDBOX_SHARED]
    shared_ro = [Path(p) for p in settings.STEPWISE_SANDBOX_SHARED_RO]
    sdk = [sandbox.sdk] if sandbox.sdk is not None else []
    mounts = [*roots, *shared, *shared_ro, sandbox.workdir, *sdk, *sandbox.read_only]
    args += _parents_args(mounts, existing=list(SYSTEM_DIRS))
    for path in [*roots, *shared_ro]:
        args += ["--ro-bind", str(path), str(path)]
    for path in [*shared, sandbox.workdir]:
        args += ["--bind", str(path), str(path)]
    for path in sdk:
        args += ["--ro-bind", str(_staged_copy(path)), str(path)]
    for path in sandbox.read_only:
        args += ["--ro-bind-try", str(path), str(path)]
    args += [
        "--chdir",
        str(sandbox.cwd),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "step",
        # The whole sandbox dies with the worker: nothing of a step outlives it.
        "--die-with-parent",
    ]
    netns = None if sandbox.isolated_network else network_namespace(outbound=sandbox.network)
    if netns is None and (sandbox.isolated_network or not sandbox.network):
        args.append("--unshare-net")  # a namespace of its own: slower to start, as safe
    ids = step_uid()
    if ids is None:
        args += ["--unshare-user", "--", *command]
    else:
        # bwrap runs privileged (it needs no user namespace then) and the step itself as an
        # unprivileged uid: in a user namespace of its own, the step's uid would be root outside.
        args += [*_drop_args(*ids), *command]
    return args, netns


def _drop_args(uid: int, gid: int) -> list[str]:
    """What hands the step to `uid`: runit's chpst where installed, else util-linux's setpriv.

    chpst starts in half the time of setpriv (0.6 ms a step, `make bench`): it needs only libc.
    bwrap hands it no capability but the two it uses, which the uid change clears from the
    permitted and effective sets; chpst leaves them inheritable and the bounding set as it is,
    which bwrap's no_new_privs makes moot: no exec of the step gains a capability.
    """
    chpst = _chpst()
    if chpst is not None:
        caps = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return [*caps, "--", chpst, "-u", f":{uid}:{gid}"]
    drop = ["--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    return ["--", "setpriv", f"--reuid={uid}", f"--regid={gid}", *drop]


@functools.cache
def _chpst() -> str | None:
    return shutil.which("chpst")


class _Spawner:
    """Starts processes in a network namespace: the calling thread enters it (setns moves only
    that thread), starts the process, which is born there, and goes back to its own at once.

    The worker keeps the host's network (its Redis and database connections keep theirs for
    good, whatever the thread's namespace), with no `nsenter` process (a few milliseconds a step)
    and no hand-over to a thread living in the namespace (0.1 to 0.2 ms a step, `make bench`).
    Where setns is refused, steps go through `nsenter`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.entered = True
        self.fd: int | None = None
        self.lock = threading.Lock()  # a sweep's trials start their processes from threads of their own

    def popen(self, args: list[str], **popen) -> subprocess.Popen:
        if self.entered:
            try:
                with self.lock:
                    if self.fd is None:
                        self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                home = _home_namespace()
                _setns(self.fd)
            except OSError as exc:
                self.entered = False
                log.warning("cannot enter the steps' network namespace (%s): steps go through nsenter", exc)
            else:
                try:
                    return subprocess.Popen(args, **popen)
                finally:
                    _setns(home)  # refused only without CAP_SYS_ADMIN, which entering it needed too
        return subprocess.Popen(["nsenter", f"--net={self.path}", "--", *args], **popen)

    def stop(self) -> None:
        with self.lock:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


@functools.cache  # opened before any thread of this process enters a step's namespace
def _home_namespace() -> int:
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


CLONE_NEWNET = 0x40000000
_spawners: dict[str, _Spawner] = {}
_spawners_lock = threading.Lock()


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _spawner(path: str) -> _Spawner:
    with _spawners_lock:
        if path not in _spawners:
            _spawners[path] = _Spawner(path)
        return _spawners[path]


def _forget_spawner(path: str) -> None:
    with _spawners_lock:
        spawner = _spawners.pop(path, None)
    if spawner is not None:
        spawner.stop()


class StepNetwork:
    """A network namespace per worker process: outbound through pasta with the host's loopback
    unmapped, or (`outbound=False`) with nothing but its own loopback.

    Made on the first step that wants it and kept: creating one per step would cost a step
    tens of milliseconds (`--unshare-net` took 27 ms a step, `make bench`). Steps of one worker
    run one at a time, and their processes die with their PID namespace, so the namespace
    carries nothing from one step to the next.
    """

    def __init__(self, *, outbound: bool = True) -> None:
        self.outbound = outbound
        self.lock = threading.Lock()
        self.name: str | None = None
        self.pasta: subprocess.Popen | None = None
        self.unavailable: str | None = None

    def path(self) -> str | None:
        with self.lock:
            if self.unavailable is not None:
                return None
            if self.name is not None and self._alive():
                return f"/run/netns/{self.name}"
            try:
                self._start()
            except (OSError, subprocess.SubprocessError, SandboxError) as exc:
                self.unavailable = str(exc)
                if self.outbound:
                    log.warning(
                        "steps with network share this host's network (%s): Redis, the database and any other "
                        "service on this host must require credentials",
                        exc,
                    )
                return None
            return f"/run/netns/{self.name}"

    def _alive(self) -> bool:
        if self.outbound:
            return self.pasta is not None and self.pasta.poll() is None
        return Path("/run/netns", self.name or "").exists()

    def _start(self) -> None:
        if not running_as_root():
            raise SandboxError("a worker that is not root cannot make a network namespace for its steps")
        for tool in ("ip", "pasta", "nsenter") if self.outbound else ("ip", "nsenter"):
            if shutil.which(tool) is None:
                hint = " (apt-get install passt)" if tool == "pasta" else ""
                raise SandboxError(f"`{tool}` is not installed{hint}")
        remove_stale_namespaces()
        self.stop()
        name = f"{NETNS_PREFIX}{os.getpid()}-{start_time(os.getpid())}" + ("" if self.outbound else "-offline")
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
        self.name = name
        if not self.outbound:
            subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=30)
            return
        # Outbound only: no port forwarded either way (-t/-u/-T/-U none), and the gateway
        # address not mapped to the host (--no-map-gw): 127.0.0.1 is the namespace's own.
        self.pasta = subprocess.Popen(
            [
                "setpriv",
                "--pdeathsig",
                "KILL",
                "--",
                "pasta",
                "--config-net",
                "--no-map-gw",
                "-t",
                "none",
                "-u",
                "none",
                "-T",
                "none",
                "-U",
                "none",
                "--quiet",
                "--foreground",
                "--runas",
                "0:0",
                "--netns",
                f"/run/netns/{name}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        processes.register_helper(self.pasta.pid)
        deadline = time.monotonic() + NETNS_READY_S
        while not _has_default_route(name):
            if self.pasta.poll() is not None:
                err = self.pasta.stderr.read().decode(errors="replace") if self.pasta.stderr else ""
                raise SandboxError(f"pasta stopped: {err.strip()[-300:]}")
            if time.monotonic() > deadline:
                raise SandboxError("pasta did not configure the steps' network in time")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.pasta is not None:
            processes.unregister_helper(self.pasta.pid)
            if self.pasta.poll() is None:
                self.pasta.kill()
                self.pasta.wait()
        self.pasta = None
        if self.name is not None:
            _forget_spawner(f"/run/netns/{self.name}")
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)
            self.name = None


def _has_default_route(name: str) -> bool:
    result = subprocess.run(
        ["ip", "-n", name, "-4", "route", "show", "default"], capture_output=True, text=True, timeout=10
    )
    return "default" in result.stdout


def remove_stale_namespaces() -> list[str]:
    """Delete the namespaces of workers of this host that are gone (SIGKILL leaves them behind)."""
    removed = []
    folder = Path("/run/netns")
    if not folder.is_dir():
        return removed
    for entry in folder.glob(f"{NETNS_PREFIX}*"):
        pid, _, rest = entry.name[len(NETNS_PREFIX) :].partition("-")
        ticks = rest.partition("-")[0]  # then "-offline" for the namespace of steps without network
        if pid.isdigit() and start_time(int(pid)) == ticks:
            continue
        subprocess.run(["ip", "netns", "delete", entry.name], capture_output=True, timeout=30)
        removed.append(entry.name)
    return removed


_networks = {True: StepNetwork(outbound=True), False: StepNetwork(outbound=False)}


def network_namespace(*, outbound: bool = True) -> str | None:
    return _networks[outbound].path()


def warm_up(*, network: bool, sdk: Path | None = None) -> None:
    """Make what each step's sandbox is built from (the check, /etc, /dev, the network namespace,
    the copy of `sdk`) as the worker starts, not in its first step: that step started hundreds of milliseconds late.
    Where the sandbox cannot start, the steps fail with why; the worker still starts.

    Call it from the thread that runs the steps: the network helper dies with the thread that
    started it.
    """
    try:
        _home_namespace()
        check()
        # The check's PID namespace init can outlive bwrap by a moment and fall to the worker
        # (their subreaper): reaped now, not at the end of the first step. No step runs yet.
        processes.kill_children()
        _staged_etc()
        _dev_args()
        if sdk is not None:
            _staged_copy(sdk)
        network_namespace(outbound=network)
    except (SandboxError, OSError, subprocess.SubprocessError) as exc:
        log.warning("the steps' sandbox is not ready: %s", exc)


def steps_share_host_network() -> bool:
    """Whether sandboxed steps with network would share this host's network (and reach its
    loopback services), judged without making a namespace: a worker must be root and have the tools."""
    return not running_as_root() or any(shutil.which(tool) is None for tool in ("ip", "pasta", "nsenter"))


def stop() -> None:
    """Remove this worker's network namespace, its copies of /etc, /dev and the SDK and its spare
    working folder (on a clean exit; a killed worker's go at the next start of a worker on this host)."""
    global _etc, _dev, _spare
    for network in _networks.values():
        network.stop()
    with _etc_lock:
        if _etc is not None:
            shutil.rmtree(_etc[0], ignore_errors=True)
            _etc = None
    with _dev_lock:
        if _dev is not None and _dev[0] == "--dev-bind":
            shutil.rmtree(_dev[1], ignore_errors=True)
        _dev = None
    with _copies_lock:
        for folder in _copies.values():
            shutil.rmtree(folder, ignore_errors=True)
        _copies.clear()
    with _spare_lock:
        if _spare is not None:
            shutil.rmtree(_spare, ignore_errors=True)
            _spare = None
