"""What the Ray cluster can do for a run: connect, count nodes, size the actor pool, refuse the impossible.

Every check here runs on the driver after connecting and before anything is written:

- a multi-node cluster with a plain local ``out_dir`` (each node would write its own disk) is refused
  unless ``storage.shared: true`` declares the path a mount every node has;
- an actor request no alive node can ever satisfy (``ray.cpus_per_worker: 8`` on 2-CPU nodes) is refused
  instead of waiting forever, unless ``ray.autoscaling: true`` says nodes are added on demand.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from atlas.config import RunConfig
from atlas.errors import ConfigError, Terminated, first_line


@dataclass(frozen=True)
class WorkerLayout:
    actors: int
    cpus: float  # per actor
    gpus: float  # per actor
    threads: int  # torch intra-op threads per actor
    note: str | None = None  # what was changed from the config, and why (the driver prints it)
    memory: int = 0  # host memory bytes reserved per actor (Ray's ``memory`` resource); 0: none reserved

    def describe(self) -> str:
        return f"{self.actors} actor(s) x {self.each()}"

    def each(self) -> str:
        """What one actor asks of a node: ``1 CPU``, ``1 GPU, 2.4 GB``."""
        device = f"{self.gpus:g} GPU" if self.gpus else f"{self.cpus:g} CPU"
        return device + (f", {self.memory / GB:.1f} GB" if self.memory else "")


GB = 1e9
# an actor's resident memory: the Python + torch + Ray process, then its copy of the models (fetched from the
# object store, moved to its device, plus the engine's working copies and activations). AlexNet + DeePSiM fc6
# + CaffeNet (0.71 GB of weights) measured 3.2-4.2 GB per CPU actor at batch 64; 1 GB + 4 x 0.71 = 3.9 GB.
# A GPU actor keeps its models and activations on the device: on the host, the fetched copy while it moves
# (2 x, reasoned, not measured).
ACTOR_BASE_BYTES = 1.0 * GB
ACTOR_BYTES_PER_WEIGHT_BYTE = 4.0
GPU_ACTOR_BYTES_PER_WEIGHT_BYTE = 2.0


# Ray starts workers at niceness 15; the actors are the work itself, and at 15 any other busy process on the
# machine starves them (a restarted actor spent minutes importing under a CPU hog). Local instances use 0.
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}  # copied per ray.init: Ray adds its own keys to the dict


ADDRESS_FORMS = (
    "host:port (the head's GCS port, e.g. 10.0.0.5:6379; IPv6 as [::1]:6379), ray://host:port (Ray Client), "
    "'auto' (the cluster started on this machine) or 'local'"
)


def _given(address: str | None) -> tuple[str | None, str]:
    """(the address in use, where it came from): the argument, else ``RAY_ADDRESS``."""
    if address:
        return address, "--address (or ray.address)"
    return os.environ.get("RAY_ADDRESS"), "RAY_ADDRESS"


def check_address(address: str | None) -> tuple[str, int] | None:
    """The (host, port) of a Ray address (``--address`` / ``ray.address``, else ``RAY_ADDRESS``); None for
    no address, 'auto' and 'local'. A malformed one is a one-line error: ray.init raises a traceback."""
    addr, source = _given(address)
    if not addr or addr in ("auto", "local"):
        return None
    if addr.startswith(("http://", "https://")):  # RAY_ADDRESS as Ray's job docs set it, for `ray job submit`
        host = addr.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[0] or "HEAD"
        raise ConfigError(
            f"{source}: Ray address {addr!r} is a dashboard URL, what `ray job submit` takes; `atlas run` "
            f"joins the head's GCS port: give {host}:PORT, PORT the head's `ray start --head --port` (6379 "
            "unless set), or 'auto' on the head itself"
        )
    host, sep, port = addr.removeprefix("ray://").rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")  # IPv6: [::1]:6379
    host = host[1:-1] if bracketed else host
    bad_host = not host or any(c in host for c in " /\t") or (":" in host and not bracketed)
    if not (sep and port.isdigit() and 0 < int(port) < 65536) or bad_host:
        raise ConfigError(f"{source}: Ray address {addr!r} is not valid; expected {ADDRESS_FORMS}")
    return host, int(port)


# Ray's well-known ports that are not a head's GCS port (ray job submit's address is the dashboard's)
DASHBOARD_PORTS = {8265: "dashboard and job-submission port", 10001: "Ray Client port (use ray://host:10001)"}


# the client's HTTP/2 connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers
# with a SETTINGS frame of its own (a 9-byte frame header whose type byte is 4)
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
HTTP2_SETTINGS = 4


def speaks_grpc(host: str, port: int, timeout_s: float = 3.0) -> bool | None:
    """Whether the server at ``host:port`` answers an HTTP/2 preface as a gRPC server does (True), answers
    otherwise or hangs up (False: a dashboard's HTTP/1, an SSH banner, ...), or says nothing in
    ``timeout_s`` (None: undecided)."""
    head = b""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            conn.sendall(HTTP2_PREFACE)
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return None if not head else False
    except OSError:
        return False
    return len(head) == 9 and head[3] == HTTP2_SETTINGS


def probe_address(address: str | None, timeout_s: float = 5.0, answer_timeout_s: float = 3.0) -> None:
    """Refuse, in one line, a Ray address whose host cannot be resolved, where nothing listens (a TCP
    connect), or where something else than a gRPC server answers (a dashboard on another port; its GCS
    speaks gRPC): ray.init would retry for minutes, or for ever."""
    where = check_address(address)
    if where is None:
        return
    addr, source = _given(address)
    host, port = where
    if port in DASHBOARD_PORTS and not addr.startswith("ray://"):
        raise ConfigError(
            f"{source}: port {port} of Ray address {addr!r} is Ray's {DASHBOARD_PORTS[port]}, not the head's "
            "GCS port (6379 unless `ray start --head --port` says otherwise); give host:PORT"
        )
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ConfigError(f"{source}: the host of Ray address {addr!r} cannot be resolved") from None
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ConfigError(
            f"{source}: nothing answers at Ray address {addr!r} ({why}); start the cluster "
            "(`ray start --head`) and give its head's host:port, or leave the address unset for a local "
            "instance"
        ) from None
    tls = os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true")  # a TLS handshake comes first there
    if not addr.startswith("ray://") and not tls and speaks_grpc(host, port, answer_timeout_s) is False:
        raise ConfigError(
            f"{source}: Ray address {addr!r} answers, but not as Ray's GCS does (it speaks gRPC): another "
            "service listens on that port (a dashboard's HTTP, say); give the head's GCS port (6379 unless "
            "`ray start --head --port` says otherwise)"
        )


def shutdown_local() -> None:
    """Shut down the Ray instance this process started, and end the agents it orphaned.

    A Ctrl-C at a terminal reaches the whole process group, Ray's raylet included: a raylet that dies of it
    leaves its dashboard and runtime-env agents running for about a minute (~200 MB), which
    ``ray.shutdown`` no longer reaches (seen after a Ctrl-C while Ray started)."""
    import ray

    ray.shutdown()
    end_orphaned_agents()


def kill_actors(actors: list[Any], timeout_s: float = 10.0) -> list[Any]:
    """``ray.kill`` each actor, then keep the handles until Ray reports each one dead (or ``timeout_s``
    passes); returns those not confirmed dead. ``ray.kill`` returns at once: handles dropped right after
    it can tell the GCS "out of scope" before the kill lands, and the actor then exits gracefully through
    Ray's exit handler, which sometimes hung (a holder left running with parent 1)."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    for actor in actors:
        ray.kill(actor, no_restart=True)
    deadline = time.monotonic() + timeout_s
    alive = list(actors)
    while alive and time.monotonic() < deadline:
        pending = []
        for actor in alive:
            try:  # a killed actor's calls fail with RayActorError; one still running answers or times out
                ray.get(actor.__ray_ready__.remote(), timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                pending.append(actor)
            except RayActorError:
                continue
            except GetTimeoutError:
                pending.append(actor)
        alive = pending
        if alive:
            time.sleep(0.1)
    return alive


def _local_processes(*kinds: str) -> list[Any] | None:
    """The processes (Popen) of ``kinds`` ("raylet", "gcs_server", ...) of the local Ray instance this
    process started, from Ray's own record of what its ray.init started; None when it started none."""
    import ray

    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    try:
        return [i.process for kind in kinds for i in node.all_processes.get(kind) or []]
    except AttributeError:  # no local instance of this process's (a cluster)
        return None


def local_instance_signalled(wait_s: float = 0.5) -> bool:
    """Whether the signal that interrupted the run reached the local Ray instance too (a SIGTERM to the
    whole process group): its Python helpers (monitor, log monitor), which keep the default handler, are
    gone within ``wait_s``. Its GCS and raylet then shut down and carry no ``ray.kill``. A Ctrl-C reaches
    the group too, but Ray's processes block SIGINT; a SIGTERM to the driver alone reaches none."""
    helpers = _local_processes("monitor", "log_monitor")
    if not helpers:
        return False
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in helpers):
            return True
        time.sleep(0.05)
    return any(p.poll() is not None for p in helpers)


def end_local_instance() -> list[int]:
    """SIGKILL the local Ray instance this process started: its GCS, its raylet and every process the
    raylet started (the actors' workers, its agents); returns the workers' and agents' pids ([] when this
    process started none). ``ray.shutdown`` then has only the driver's side left to end.

    For an interrupted run whose instance goes down with it. A SIGTERM to the whole process group
    (`timeout`, Slurm, systemd) reaches the GCS and raylet too; shutting down, they no longer carry
    ``ray.kill``, so :func:`kill_actors` waited its whole timeout while the workers went on writing shards,
    and the run took 17-34 s to stop (a user's trial). The workers write each shard whole, then its
    marker: a worker ended mid-shard leaves nothing the resume takes for done."""
    raylets = [p.pid for p in _local_processes("raylet") or []]
    gcs = [p.pid for p in _local_processes("gcs_server") or []]
    workers = [child for pid in raylets for child in _children(pid)]
    _end_trees(workers + raylets + gcs)
    return workers


def end_orphaned_agents(proc: str = "/proc") -> list[int]:
    """SIGKILL the Ray agents of this process group whose raylet died: processes with parent 1 and
    ``RAY_RAYLET_PID`` in their environment (every process a raylet starts has it) naming a raylet that no
    longer runs. A live instance's processes are left alone (even a worker that Ray started detached, with
    parent 1), as are other groups'. Returns the pids ended ([] where there is no /proc)."""
    ended: list[int] = []
    if not os.path.isdir(proc):
        return ended
    group, me = os.getpgrp(), os.getpid()
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        try:
            if _stat(pid, proc)[1:3] != [b"1", b"%d" % group]:  # parent 1, this process group
                continue
            env = _environ(pid, proc)
            raylet = int(env.get(b"RAY_RAYLET_PID", b"0") or 0)
            if raylet <= 0 or _runs(raylet, proc):  # not Ray's, or its raylet lives (a detached worker)
                continue
            os.kill(pid, signal.SIGKILL)
            ended.append(pid)
        except (OSError, IndexError, ValueError):  # gone meanwhile, another user's, or unreadable
            continue
    return ended


def _environ(pid: int, proc: str = "/proc") -> dict[bytes, bytes]:
    """/proc/PID/environ as a dict (OSError when it cannot be read: gone, or another user's)."""
    with open(f"{proc}/{pid}/environ", "rb") as fh:
        return dict(v.split(b"=", 1) for v in fh.read().split(b"\0") if b"=" in v)


def _stat(pid: int, proc: str = "/proc") -> list[bytes]:
    """/proc/PID/stat's fields after "(comm)": state, ppid, pgrp, ... ([] when it cannot be read)."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _children(pid: int, proc: str = "/proc") -> list[int]:
    """The pids whose parent is ``pid`` ([] where there is no /proc)."""
    if not os.path.isdir(proc):
        return []
    return [
        int(e.name)
        for e in os.scandir(proc)
        if e.name.isdigit() and _stat(int(e.name), proc)[1:2] == [b"%d" % pid]
    ]


def _end_trees(roots: list[int]) -> None:
    """SIGKILL ``roots`` and every process below them (collected first: a killed parent's children move to
    pid 1, out of reach of the walk)."""
    tree, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(_children(pid))
    for pid in tree:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _runs(pid: int, proc: str) -> bool:
    """Whether ``pid`` runs: it exists and is no zombie (a raylet that died, not yet reaped by its parent)."""
    state = _stat(pid, proc)[:1]
    return bool(state) and state != [b"Z"]


def _no_failure_dump_in_this_process() -> None:
    """The driver's core worker without Ray's C++ failure-signal handler: installed as ``ray.init``
    connects, it answered a SIGTERM in the moment before atlas's handler is back with a stack dump and an
    abort (exit 134), leaving the start's workers behind (a trial, 1 in 6 SIGTERMs). Set on the constant
    Ray's Cython reads when the driver connects, not in the environment: Ray's own processes and the
    actors keep theirs (a crash in a user's network still prints its stack)."""
    import ray._private.ray_constants as ray_constants

    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True


_REAL_STDERR: list[int] = []  # the saved file descriptor 2 while _stderr_said_on_success holds it back


@contextlib.contextmanager
def _stderr_said_on_success() -> Iterator[None]:
    """What this process writes to its stderr (file descriptor 2: Ray's C++ core worker too) while joining
    a cluster, held back and written once the join succeeded; on a failure the one-line error alone is
    said (a trial: a token-auth head printed seven `gcs_client.cc ... InvalidAuthToken` lines over ~7 s
    before the error that says what to do). Whatever ends the process meanwhile puts fd 2 back first
    (:func:`_stderr_back`); a closed stderr is left as it is."""
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):  # stderr closed (`2>&-`): nothing to hold back
        yield
        return
    held = tempfile.TemporaryFile()  # noqa: SIM115 - closed below, after fd 2 is back
    os.dup2(held.fileno(), 2)
    _REAL_STDERR.append(saved)
    joined = False
    try:
        yield
        joined = True
    finally:
        try:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
        finally:  # a second interrupt in the flush still puts fd 2 back
            _stderr_back()
            if joined:
                held.seek(0)
                said = held.read()
                with contextlib.suppress(OSError):  # stderr gone (a closed pipe): nothing to say it on
                    while said:
                        said = said[os.write(2, said) :]
            held.close()


def _stderr_back() -> None:
    """File descriptor 2 as it was before :func:`_stderr_said_on_success` (a no-op outside it)."""
    while True:
        try:
            saved = _REAL_STDERR.pop()  # atomic: the start's escape thread may come here too
        except IndexError:
            return
        with contextlib.suppress(OSError):
            os.dup2(saved, 2)
            os.close(saved)


def connect(address: str | None) -> bool:
    """Connect to Ray; returns True when this call started it (and so should shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    _no_failure_dump_in_this_process()
    addr = address or os.environ.get("RAY_ADDRESS")
    if addr:
        probe_address(address)  # after the model checks: `atlas config --check` stays off the network
        try:
            with _stderr_said_on_success():
                ray.init(address=addr, logging_level="WARNING")
        except ConnectionError as exc:  # e.g. 'auto' with no cluster running here
            if addr == "auto":  # Ray's own text asks for the --address flag this user just gave
                raise ConfigError(
                    "Ray address 'auto': no Ray cluster is running on this machine; start one (`ray start "
                    "--head`), give its head's host:port, or leave --address unset for a local instance"
                ) from None
            if addr.startswith("ray://") or check_address(address) is None:
                raise ConfigError(
                    f"Ray address {addr!r}: {first_line(exc)}; expected {ADDRESS_FORMS}"
                ) from None
            if "Method not found" in str(exc):  # a gRPC server without the GCS's services
                raise ConfigError(
                    f"Ray address {addr!r} answers gRPC but is no GCS (its services are missing: "
                    f"{first_line(exc)}); the Ray Client port joins as ray://{addr}, the head's GCS port "
                    "(6379 unless `ray start --head --port` says otherwise) as host:port"
                ) from None
            raise ConfigError(  # the form is right and the port answers (probe_address): not the address
                f"Ray address {addr!r} answers but Ray could not join it ({first_line(exc)}); a cluster "
                "started with token authentication needs RAY_AUTH_MODE=token and its token on this machine "
                "too (`ray get-auth-token` on the head; Ray's token-auth docs)"
            ) from None
    else:  # "local": a new instance, never a stale cluster recorded in /tmp/ray/ray_current_cluster
        _quiet_secure_default_notice()
        before = set(_children(os.getpid()))
        try:
            ray.init(
                address="local",
                num_cpus=os.cpu_count() or 1,
                include_dashboard=False,
                logging_level="WARNING",
                _system_config=dict(LOCAL_SYSTEM_CONFIG),
            )
        except BaseException as exc:  # Ctrl-C or SIGTERM while it starts: no Ray processes left behind
            shutdown_local()  # a no-op before ray.init knows its node: the processes it started then
            _end_trees([c for c in _children(os.getpid()) if c not in before])  # (gcs, raylet, agents)
            if isinstance(exc, SystemExit) and exc.code == signal.SIGTERM:  # Ray's own handler, set mid-start
                raise Terminated from None  # exit 143 with the message, as a SIGTERM a moment later
            raise
    return True


class SigtermGuard:
    """SIGTERM (``kill``, a scheduler, ``ray job stop``) handled as Ctrl-C while it is set: the run is marked
    interrupted and resumes, a viewer started with it goes down with it. Ray's ``wait``/``get`` turn the
    exception into a plain KeyboardInterrupt, so ``received`` says which signal it was.

    Both signals are also recorded, for :meth:`check`: Python runs a handler at its next bytecode, and when
    that is inside an at-fork callback (subprocess's fork, as Ray starts its processes) the exception is
    "ignored" (printed, then dropped): a user's Ctrl-C there printed a traceback of logging's _releaseLock
    and the whole run went on."""

    def __init__(self, checked: bool = False, escape_s: float | None = None) -> None:
        self.checked = checked  # its owner calls check(): a dropped interrupt is not printed
        self.received = False  # SIGTERM
        self.interrupted = False  # SIGINT
        self.previous: Any = None
        self.previous_int: Any = None
        self.previous_hook: Any = None
        self.active = threading.current_thread() is threading.main_thread()  # signals are the main thread's
        if self.active:
            self.previous = signal.signal(signal.SIGTERM, self._handle)
            if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job's stays ignored
                self.previous_int = signal.signal(signal.SIGINT, self._handle_int)
            self.previous_hook = sys.unraisablehook
            sys.unraisablehook = self._unraisable
        self.escape = _StuckStartEscape(escape_s) if escape_s is not None and self.active else None

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True
        raise Terminated

    def _handle_int(self, signum: int, frame: object) -> None:
        self.interrupted = True
        raise KeyboardInterrupt

    def settle(self) -> None:
        """The guarded start is over (returned or raised): no escape any more (main thread)."""
        if self.escape is not None:
            self.escape.stop()
            self.escape = None

    def _unraisable(self, unraisable: Any) -> None:
        """An interrupt Python dropped (the class docstring) is not printed: :meth:`check` raises it. Any
        other, or one no signal of this guard's raised, is printed as before."""
        ours = isinstance(unraisable.exc_value, KeyboardInterrupt) and (self.interrupted or self.received)
        if not (ours and self.checked):
            self.previous_hook(unraisable)

    def check(self) -> None:
        """Raise the interrupt a signal asked for where Python dropped it (the class docstring); nothing when
        none came. Called where the run goes on: after Ray starts, and at every poll of the pool."""
        if self.received:
            raise Terminated
        if self.interrupted:
            raise KeyboardInterrupt

    def restore(self) -> None:
        """Put back the handlers it replaced: a program embedding atlas keeps its own."""
        self.settle()
        if not self.active:
            return
        if self.previous is not None:  # None: a handler not set from Python, which signal() cannot put back
            signal.signal(signal.SIGTERM, self.previous)
        if self.previous_int is not None:
            signal.signal(signal.SIGINT, self.previous_int)
        if self.previous_hook is not None:
            sys.unraisablehook = self.previous_hook
        self.active = False


def stop_on_sigterm(checked: bool = False, escape_s: float | None = None) -> SigtermGuard:
    """Handle SIGTERM as Ctrl-C until ``.restore()``. Set again after ``ray.init``, whose core worker installs
    a handler of its own that ends the process at once, skipping the run's interrupted mark. ``checked``:
    the caller calls its ``check()`` (SigtermGuard), so an interrupt Python dropped goes unprinted;
    ``escape_s``: exit that long after a signal that Ray's start does not let through (SigtermGuard)."""
    return SigtermGuard(checked, escape_s)


START_ESCAPE_S = 5.0  # a signal while Ray starts ends the process this long after, if Ray holds it


class _StuckStartEscape:
    """Ends the process ``after_s`` after a SIGTERM or SIGINT that the main thread could not act on (a
    start of Ray, before the run has written anything). A Python handler runs between bytecodes only, and
    a SIGTERM to the whole process group (a scheduler's) also ends the local Ray's GCS: ``ray.init`` then
    waited 30 s for it inside one C++ call (a trial). The signal's number reaches a pipe at once
    (``signal.set_wakeup_fd``), read here by a thread that says so, ends the Ray processes the start
    began (left, they ran on with parent 1) and exits 143 (130 for SIGINT)."""

    def __init__(self, after_s: float) -> None:
        self.after_s = after_s
        self.read, self.write = os.pipe()
        os.set_blocking(self.write, False)
        self.previous_fd = signal.set_wakeup_fd(self.write, warn_on_full_buffer=False)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="atlas-start-escape", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        """Until the write end closes (:meth:`stop`): the read end is only ever closed after this returns,
        so its number is never another file's here (closed under a waiting read, the next file opened took
        it, and this thread read the first 64 bytes of a config file: a test's YAML came out truncated)."""
        while True:
            got = os.read(self.read, 64)  # blocks; b"" once the write end is closed
            if not got or self.stopped.is_set():
                return
            signals = {b for b in got if b in (signal.SIGTERM, signal.SIGINT)}
            if signals and not self.stopped.wait(self.after_s):
                self._exit(Terminated.exit_code if signal.SIGTERM in signals else 130)

    @staticmethod
    def _exit(code: int) -> None:
        _stderr_back()  # a join's held-back stderr: the line below must reach the user
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("atlas: interrupted (while Ray was starting)\n")
            sys.stderr.flush()
        _end_trees(_children(os.getpid()))
        os._exit(code)

    def stop(self) -> None:
        """No escape any more; the wakeup descriptor as it was; the thread ended before the read end
        closes (main thread)."""
        self.stopped.set()
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(self.previous_fd)
        os.close(self.write)  # the thread's read returns b"" (or what was left, then b"")
        self.thread.join()
        os.close(self.read)


class _SecureDefaultNotice(logging.Filter):
    """Drops Ray's "Token authentication is enabled for this Ray cluster" on a local start: the secure
    default, said on every run. Its warning that authentication is *disabled* still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def _quiet_secure_default_notice() -> None:
    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _SecureDefaultNotice) for f in log.filters):
        log.addFilter(_SecureDefaultNotice())


def alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [n for n in ray.nodes() if n.get("Alive")]


def check_storage(cfg: RunConfig, local: bool, where: str) -> None:
    """Refuse a plain local ``out_dir`` (before anything is written) where actors may run on another node
    than the driver: a cluster of more than one node, one that may add nodes (``ray.autoscaling``), or a
    driver that joined through Ray Client (``ray://``: its disk is on no node). The workers check again
    from where they run (:func:`atlas.pipeline.worker.check_run_reachable`)."""
    if not local or cfg.storage.shared:
        return
    nodes = alive_nodes()
    if len(nodes) > 1:
        why = f"the Ray cluster has {len(nodes)} nodes, each with its own disk"
    elif cfg.ray.autoscaling:
        why = "ray.autoscaling lets Ray add nodes, each with its own disk"
    elif _client_mode():
        why = "this driver joined through Ray Client (ray://), so its disk is on none of the cluster's nodes"
    else:
        return
    raise ConfigError(
        f"out_dir: {where} is a local path but {why}; use out_dir: s3://bucket/prefix (or gs://), or set "
        "storage.shared: true if it is a mount every node shares"
    )


def _client_mode() -> bool:
    try:
        from ray.util.client import ray as client

        return bool(client.is_connected())
    except Exception:  # noqa: BLE001 - an older or newer Ray without the client module: not a client
        return False


def plan_layout(cfg: RunConfig, n_shards: int) -> WorkerLayout:
    """Actors, CPUs/GPUs per actor and torch threads from the cluster's resources and the config."""
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    if cfg.ray.gpus_per_worker is not None:
        gpw = cfg.ray.gpus_per_worker
    else:  # a GPU per actor where there are GPUs, unless the config asks for the CPU
        gpw = 1.0 if gpus >= 1 and cfg.compute.device != "cpu" else 0.0
    cpw = cfg.ray.cpus_per_worker
    if cfg.ray.num_workers:
        n = cfg.ray.num_workers
    elif gpw > 0:
        n = int(gpus // gpw)
    else:
        n = int(cpus // cpw)
    note = None
    fits = int(gpus // gpw) if gpw > 0 else int(cpus // cpw) if cpw > 0 else n
    if cfg.ray.num_workers and not cfg.ray.autoscaling and 1 <= fits < min(n, n_shards):
        each = f"{gpw:g} GPU" if gpw > 0 else f"{cpw:g} CPU"
        note = (
            f"ray.num_workers {n} asks for more actors than this cluster holds at once ({fits} x {each}); "
            f"{fits} run, as the others would wait for nodes that never come (ray.autoscaling: true for a "
            "cluster that grows)"
        )
        n = fits
    n = max(1, min(n, n_shards))
    threads = cfg.compute.threads or max(1, int(cpw))
    return WorkerLayout(n, cpw, gpw, threads, note)


def actor_memory(cfg: RunConfig, bundle_bytes: int, gpus: float = 0.0) -> tuple[int, bool]:
    """Host memory to reserve per actor, in bytes, and whether it is an estimate:
    ``ray.memory_per_worker_gb``, else :data:`ACTOR_BASE_BYTES` + the bundle's tensor bytes x
    :data:`ACTOR_BYTES_PER_WEIGHT_BYTE` (:data:`GPU_ACTOR_BYTES_PER_WEIGHT_BYTE` for actors with ``gpus``)."""
    if cfg.ray.memory_per_worker_gb is not None:
        return int(cfg.ray.memory_per_worker_gb * GB), False
    factor = GPU_ACTOR_BYTES_PER_WEIGHT_BYTE if gpus > 0 else ACTOR_BYTES_PER_WEIGHT_BYTE
    return int(ACTOR_BASE_BYTES + factor * bundle_bytes), True


def reserve_memory(cfg: RunConfig, layout: WorkerLayout, bundle_bytes: int | None = None) -> WorkerLayout:
    """:func:`fit_memory` with :func:`actor_memory`'s reservation: a configured one when ``bundle_bytes`` is
    None (before any model loads: one no node gives is refused at once), an estimate once the bundle's
    size is known; ``layout`` unchanged in the other two cases."""
    if (cfg.ray.memory_per_worker_gb is None) == (bundle_bytes is None):
        return layout
    return fit_memory(cfg, layout, *actor_memory(cfg, bundle_bytes or 0, layout.gpus))


def fit_memory(cfg: RunConfig, layout: WorkerLayout, need: int, estimated: bool) -> WorkerLayout:
    """``layout`` with ``need`` bytes of host memory reserved per actor (Ray's ``memory`` resource, so Ray
    itself puts no more actors on a node than its memory holds) and its actor count capped to what fits
    each alive node's CPUs, GPUs and memory at once (counting CPUs alone, a 32-core 64 GB node started 32
    actors of ~4 GB); a note says so when memory is what lowered the count. A reservation no node can
    give: an error when the config set it; an estimate is lowered to the most a node offers (only such
    nodes then host an actor, one each; noted). A cluster that autoscales keeps its count and reserves
    only a configured amount (nodes yet to come may hold less than an estimate); nodes that report no
    memory to Ray get no reservation."""
    if cfg.ray.autoscaling:
        return layout if estimated else replace(layout, memory=need)
    hosts = [  # (CPU, GPU, memory) of each node that can host an actor by its CPUs and GPUs
        (res.get("CPU", 0.0), res.get("GPU", 0.0), res.get("memory", 0.0))
        for res in (n.get("Resources", {}) for n in alive_nodes())
        if res.get("CPU", 0.0) >= layout.cpus and res.get("GPU", 0.0) >= layout.gpus
    ]
    if not hosts:  # check_feasible said why
        return replace(layout, memory=need)
    most = max(m for _, _, m in hosts)
    if most <= 0:
        return layout
    notes = [layout.note] if layout.note else []
    if need > most:
        if not estimated:
            raise ConfigError(
                f"ray.memory_per_worker_gb: {need / GB:g} GB per actor but no node of this cluster offers "
                f"Ray more than {most / GB:.1f} GB; lower it, or set ray.autoscaling: true if bigger nodes "
                "are added on demand"
            )
        notes.append(
            f"each actor's estimated {need / GB:.1f} GB is more than any node offers Ray "
            f"({most / GB:.1f} GB): actors get {most / GB:.1f} GB, one on each node that offers that much "
            "(ray.memory_per_worker_gb sets it)"
        )
        need = int(most)

    def slots(cpu: float, gpu: float, memory: float | None = None) -> int:
        by_device = int(cpu // layout.cpus) if layout.cpus > 0 else layout.actors
        if layout.gpus > 0:
            by_device = min(by_device, int(gpu // layout.gpus))
        return by_device if memory is None else min(by_device, int(memory // need))

    by_devices = sum(slots(cpu, gpu) for cpu, gpu, _ in hosts)  # what fits the nodes, memory aside
    fits = sum(slots(*host) for host in hosts)
    actors = layout.actors
    if 1 <= fits < actors:
        if fits < by_devices:  # memory lowered it, not CPUs or GPUs split across nodes
            how = "estimated from the models" if estimated else "ray.memory_per_worker_gb"
            total = sum(m for _, _, m in hosts)
            notes.append(
                f"{fits} actor(s) fit this cluster's memory ({need / GB:.1f} GB each, {how}; its nodes offer "
                f"Ray {total / GB:.1f} GB), not the {min(actors, by_devices)} its CPUs/GPUs hold"
            )
        actors = fits
    return replace(layout, actors=actors, memory=need, note="; ".join(notes) or None)


def check_device(cfg: RunConfig, layout: WorkerLayout) -> None:
    """Refuse a ``compute.device`` the actors cannot have: Ray shows each actor only the GPUs it was given
    (``ray.gpus_per_worker``), numbered from 0, so ``cuda`` needs GPUs per actor and ``cuda:N`` an index
    below their count."""
    device = cfg.compute.device
    if not device.startswith("cuda"):
        return
    if layout.gpus <= 0:
        why = (
            "ray.gpus_per_worker: 0 gives them none"
            if cfg.ray.gpus_per_worker is not None
            else "the cluster has no GPU now and ray.gpus_per_worker is unset"
        )
        raise ConfigError(
            f"compute.device: {device} but the actors get no GPU ({why}); set ray.gpus_per_worker: 1 (with "
            "ray.autoscaling: true for GPU nodes yet to start) or use device: auto"
        )
    index = device.partition(":")[2]
    if index.isdigit() and int(index) >= max(1, int(layout.gpus)):
        raise ConfigError(
            f"compute.device: {device}, but each actor sees only its own {max(1, int(layout.gpus))} GPU(s), "
            "numbered from 0 (ray.gpus_per_worker); use device: cuda or auto"
        )


def check_feasible(cfg: RunConfig, layout: WorkerLayout) -> None:
    """Refuse an actor no alive node can ever host (it would wait forever), unless the cluster autoscales."""
    if cfg.ray.autoscaling:
        return
    nodes = alive_nodes()
    sizes = [
        (float(n.get("Resources", {}).get("CPU", 0.0)), float(n.get("Resources", {}).get("GPU", 0.0)))
        for n in nodes
    ]
    if any(c >= layout.cpus and g >= layout.gpus for c, g in sizes):
        return
    best_cpu = max((c for c, _ in sizes), default=0.0)
    best_gpu = max((g for _, g in sizes), default=0.0)
    if layout.gpus > best_gpu:
        key, want, have, unit = "ray.gpus_per_worker", layout.gpus, best_gpu, "GPU"
    else:
        key, want, have, unit = "ray.cpus_per_worker", layout.cpus, best_cpu, "CPU"
    if have <= 0 and unit == "CPU":  # a head started with --num-cpus=0 and no worker node yet: no value fits
        raise ConfigError(
            f"the Ray cluster has no node with a CPU to host an atlas actor ({len(sizes)} node(s) alive, 0 "
            "CPUs); add worker nodes (ray start --address=...), or set ray.autoscaling: true if they are "
            "added on demand"
        )
    raise ConfigError(
        f"{key}: each actor needs {want:g} {unit} but no node of this cluster has more than {have:g}; "
        f"lower {key}, or set ray.autoscaling: true if nodes are added on demand"
    )
