"""Devices and processes of a sweep: the one home of everything multi-device and multi-process.

- Where a process stands (`Processes`, the options `--processes`, `--distributed`,
  `--coordinator` ...; `Processes.mode`): alone, the launcher of local workers, one of them,
  or joining a job found by JAX; how many CPU devices it starts (`device_count`).
- The configuration axis on the devices: one mesh axis "cfg" over every (global) device.
  Arrays are placed with `jax.make_array_from_callback`, so each process builds only its own
  shards (multi-host), and brought back with `process_allgather` when there are several.
- Process 0 alone reads and writes the output folder; what it reads (finished rows,
  checkpoints, the plan) and what it refuses (a held lock, another sweep's folder) reaches
  the others through `from_writer`, so every process enters the same collectives in the
  same order and none waits for a partner that has given up.
- Joining JAX's distributed runtime (`initialize`), and `launch`, the local convenience
  behind `--processes N`: N workers on this machine, each the same command, told its place
  by the environment (`ZASJAX_COORDINATOR`, `ZASJAX_PROCESS_ID`, `ZASJAX_NUM_PROCESSES`,
  `ZASJAX_DEVICES`), exactly as on a cluster. The launcher forwards SIGINT/SIGTERM and stops
  them all with one line if one fails. A launcher killed outright (SIGKILL) cannot stop its
  workers, so each watches it (`stop_with_launcher`) and stops within a second once it is
  gone; the folder then resumes as after any kill.

Exit status of a worker whose partner vanished: `PEER_LOST` (75). Run by the launcher it
says nothing (the launcher names the worker that failed); run on its own it prints one line.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._options import option
from ._plan import LOOP_MIN_DIM


def make_mesh(devices=None) -> Mesh:
    return Mesh(np.asarray(list(devices or jax.devices())), ("cfg",))


def sharding(mesh: Mesh, ndim: int, axis: int) -> NamedSharding:
    spec = [None] * ndim
    spec[axis] = "cfg"
    return NamedSharding(mesh, PartitionSpec(*spec))


def put(x, mesh: Mesh, axis: int) -> jax.Array:
    """Place a host array (configurations first) on the mesh, split along `axis`."""
    x = np.moveaxis(np.asarray(x), 0, axis)
    return jax.make_array_from_callback(x.shape, sharding(mesh, x.ndim, axis),
                                        lambda idx: x[idx])


def to_host(x, axis: int = 0) -> np.ndarray:
    """The whole array on this host, configurations first (a collective with several
    processes: every process must call it, in the same order)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        x = multihost_utils.process_allgather(x, tiled=True)
    return np.moveaxis(np.asarray(x), axis, 0)


def is_writer() -> bool:
    """Process 0 reads and writes the output folder; the others write nothing."""
    return jax.process_index() == 0


class WriterRefused(Exception):
    """Raised on processes other than 0 when process 0 refused to go on (it says why)."""


def from_writer(obj):
    """`obj` as process 0 holds it, on every process (a collective: all must call it).

    Any picklable object: its bytes travel as a uint8 array through JAX's own broadcast,
    the same runtime (gloo on CPU, NCCL on GPU) as the sweep's collectives.
    """
    if jax.process_count() == 1:
        return obj
    from jax.experimental import multihost_utils

    data = np.frombuffer(pickle.dumps(obj), np.uint8) if is_writer() else np.zeros(0, np.uint8)
    n = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buf = np.zeros(n, np.uint8)
    buf[: data.size] = data
    return pickle.loads(np.asarray(multihost_utils.broadcast_one_to_all(buf)).tobytes())


def on_writer(fn):
    """`fn()` run by process 0 alone, its result on every process.

    If it raises, process 0 re-raises the error and every other process raises
    `WriterRefused` with its message, instead of waiting in a collective process 0 never
    enters.
    """
    if jax.process_count() == 1:
        return fn()
    if is_writer():
        try:
            value = fn()
        except Exception as e:
            from_writer((False, str(e)))
            raise
        from_writer((True, value))
        return value
    ok, value = from_writer(None)
    if not ok:
        raise WriterRefused(value)
    return value




# ---------------------------------------------------------------------------------------------
# Where a process stands
# ---------------------------------------------------------------------------------------------

def _check_coordinator(text, name: str) -> str:
    host, sep, port = str(text).rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"--{name} expects HOST:PORT, got {text!r}")
    return str(text)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Processes:
    """How the processes of a sweep find each other; checked on construction.

    Alone (the default); `processes=N` starts N local workers (JAX's distributed runtime on
    this machine, as on a cluster); `distributed=True` joins a job JAX finds itself (SLURM,
    Open MPI, cloud TPU); or `coordinator`, `num_processes` and `process_id` join by hand.
    Process 0 writes. None of it changes a result.
    """

    processes: int | None = option(
        None, "run the sweep as N processes on this machine (JAX's distributed runtime, as "
              "on a cluster); process 0 writes", metavar="N")
    distributed: bool = option(
        False, "join a multi-process job found by JAX (SLURM, Open MPI, cloud TPU): "
               "jax.distributed.initialize() with no arguments", const=True)
    coordinator: str | None = option(
        None, "join a multi-process job: process 0's address (with --num-processes and "
              "--process-id; every process runs the same command)", metavar="HOST:PORT",
        parse=_check_coordinator)
    num_processes: int | None = option(None, "processes of the job, with --coordinator",
                                       metavar="N")
    process_id: int | None = option(None, "this process's index, with --coordinator",
                                    metavar="I")

    def __post_init__(self):
        by_hand = {"--coordinator": self.coordinator, "--num-processes": self.num_processes,
                   "--process-id": self.process_id}
        given = [k for k, v in by_hand.items() if v is not None]
        if self.processes is not None:
            if self.processes < 1:
                raise ValueError(f"--processes must be >= 1, got {self.processes}")
            if self.distributed or given:
                raise ValueError("--processes starts its own workers; give it without "
                                 "--distributed, --coordinator, --num-processes, --process-id")
        if given:
            if self.distributed:
                raise ValueError("give --distributed (JAX finds the job) or --coordinator, "
                                 "--num-processes and --process-id, not both")
            if len(given) < 3:
                missing = sorted(set(by_hand) - set(given))
                raise ValueError(f"{', '.join(given)} needs {' and '.join(missing)} too")
            _check_coordinator(self.coordinator, "coordinator")
            if self.num_processes < 1:
                raise ValueError(f"--num-processes must be >= 1, got {self.num_processes}")
            if not 0 <= self.process_id < self.num_processes:
                raise ValueError(f"--process-id must be in 0..{self.num_processes - 1}, got "
                                 f"{self.process_id}")

    @property
    def mode(self) -> str | None:
        """None (alone), "launch" (start the workers), "worker" (one of them), "join"
        (coordinator given), "detect" (JAX finds the job)."""
        if self.processes is not None:
            if launched():
                return "worker"
            return "launch" if self.processes > 1 else None
        if self.coordinator is not None:
            return "join"
        return "detect" if self.distributed else None

    def join(self) -> None:
        """Join the job this process belongs to (nothing when alone); before any sweep."""
        mode = self.mode
        if mode == "worker":
            stop_with_launcher()
            env = os.environ
            initialize(env["ZASJAX_COORDINATOR"], int(env["ZASJAX_NUM_PROCESSES"]),
                       int(env["ZASJAX_PROCESS_ID"]))
        elif mode == "join":
            initialize(self.coordinator, self.num_processes, self.process_id)
        elif mode == "detect":
            initialize()


def check_devices(devices) -> None:
    """ValueError unless `devices` is None, "auto" or a count >= 1."""
    if devices is None or devices == "auto":
        return
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"--devices expects a number >= 1 or 'auto', got {devices!r}")


def device_count(devices, dims, per_host: int = 1) -> int | None:
    """CPU devices a process starts for `devices` (None: JAX's default), in a sweep of
    widths `dims` by `per_host` processes on this machine. "auto": one per core from width
    `LOOP_MIN_DIM` on, where that is faster; JAX's default below it, where it is not."""
    if os.environ.get("ZASJAX_DEVICES"):  # a worker: its launcher decided
        return int(os.environ["ZASJAX_DEVICES"])
    if devices != "auto":
        return devices
    if max(dims) < LOOP_MIN_DIM:
        return None
    return max(cores() // per_host, 1)


def start_devices(n: int | None) -> None:
    """Start JAX's CPU backend with `n` devices (a process-wide setting: the CLI's, before
    any JAX computation; the count is fixed once the backend starts)."""
    if n is None:
        return
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        raise ValueError("--devices: JAX's CPU backend had already started in this process; "
                         "set it before any JAX computation") from None


def peer_failure(e: Exception) -> bool:
    """Whether `e` is a collective that failed because another process went away: gloo (and
    the runtime's coordination service) report it as a runtime error, some gathers as a
    ValueError."""
    text = str(e)
    return isinstance(e, jax.errors.JaxRuntimeError) or any(
        w in text for w in ("Gloo", "UNAVAILABLE", "Connection reset", "DEADLINE_EXCEEDED"))


# ---------------------------------------------------------------------------------------------
# Joining the runtime, and the local launcher
# ---------------------------------------------------------------------------------------------

#: Seconds a process waits for the others to join, the heartbeat silence after which a
#: process counts as dead, and how long a finished process waits for the others at exit.
INIT_TIMEOUT_S = 120
HEARTBEAT_TIMEOUT_S = 60
SHUTDOWN_TIMEOUT_S = 120

#: Exit status of a worker that stopped because another process of the sweep did.
PEER_LOST = 75

#: Seconds the launcher lets the other workers stop on their own once one has failed.
GRACE_S = 10.0

ENV = ("ZASJAX_COORDINATOR", "ZASJAX_NUM_PROCESSES", "ZASJAX_PROCESS_ID", "ZASJAX_DEVICES",
       "ZASJAX_LAUNCHER_PID")

#: Seconds between a worker's checks that its launcher is still alive.
WATCH_S = 0.5


def launched() -> bool:
    """Whether this process is a worker started by `launch`."""
    return "ZASJAX_PROCESS_ID" in os.environ


def stop_with_launcher(poll_s: float = WATCH_S) -> None:
    """In a worker started by `launch`: exit (status `PEER_LOST`, no cleanup, as if killed
    with it) once the launcher is gone, which a SIGKILLed launcher cannot tell it."""
    if not os.environ.get("ZASJAX_LAUNCHER_PID", "").isdigit():
        return  # worker variables set by hand: nobody to watch
    launcher = int(os.environ["ZASJAX_LAUNCHER_PID"])

    def watch():
        while os.getppid() == launcher:
            time.sleep(poll_s)
        sys.stderr.write("zasjax: the launcher of this sweep is gone; stopping this worker "
                         "(finished runs are kept: run the command again with --resume)\n")
        sys.stderr.flush()
        os._exit(PEER_LOST)

    threading.Thread(target=watch, name="zasjax-launcher-watch", daemon=True).start()


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> None:
    """`jax.distributed.initialize` with timeouts, so a missing process cannot hang the rest
    (None everywhere: JAX's own detection of SLURM, Open MPI, cloud TPU ...)."""
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=INIT_TIMEOUT_S,
                                   heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
                                   shutdown_timeout_seconds=SHUTDOWN_TIMEOUT_S)
    except (RuntimeError, ValueError, TypeError) as e:  # JaxRuntimeError is a RuntimeError
        where = f" at {coordinator}" if coordinator else ""
        raise ValueError(f"could not join the sweep's processes{where}: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def free_port() -> int:
    """A TCP port nobody listens on now (the coordinator binds it moments later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def launch(argv: list[str], n: int, devices: int | None, out: str) -> int:
    """Run `zasjax *argv` as `n` workers of one sweep on this machine; their exit status.

    `devices`: CPU devices per worker (None: JAX's default). Worker 0 writes and shows
    progress; if a worker fails, the others are stopped and one line says which and how to
    resume.
    """
    port = free_port()
    procs = []
    for i in range(n):
        env = {**os.environ, "ZASJAX_COORDINATOR": f"127.0.0.1:{port}",
               "ZASJAX_NUM_PROCESSES": str(n), "ZASJAX_PROCESS_ID": str(i),
               "ZASJAX_LAUNCHER_PID": str(os.getpid())}
        if devices is not None:
            env["ZASJAX_DEVICES"] = str(devices)
        # A session of their own: the terminal's ^C reaches the launcher, which forwards it
        # once, rather than every worker at slightly different moments.
        procs.append(subprocess.Popen([sys.executable, "-m", "zasjax", *argv], env=env,
                                      start_new_session=True))
    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _wait(procs, received, out)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _wait(procs, received, out: str) -> int:
    order: list[int] = []  # workers in the order they exited
    deadline = None
    while True:
        for i, p in enumerate(procs):
            if i not in order and p.poll() is not None:
                order.append(i)
        if len(order) == len(procs):
            break
        failed = [i for i in order if procs[i].returncode != 0]
        if (failed or received) and deadline is None:
            deadline = time.monotonic() + GRACE_S
        if deadline is not None and time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.05)
    codes = [procs[i].returncode for i in order]
    if received:
        return 128 + received[0] if received[0] != signal.SIGINT else 130
    if all(c == 0 for c in codes):
        return 0
    n = len(procs)
    resume = (f"finished runs are in {out}/runs.csv; run the same command with --resume to "
              "finish the sweep")
    # The root cause: the first worker to fail for a reason of its own.
    root = next((i for i in order if procs[i].returncode not in (0, PEER_LOST)), None)
    if root is None:
        print(f"zasjax: error: the {n} workers lost contact with each other; {resume}",
              file=sys.stderr)
        return 1
    code = procs[root].returncode
    if code == 2:
        return 2  # a refusal: worker 0 said why, in one line
    if code == 130:
        return 130
    why = (f"was killed by {signal.Signals(-code).name}" if code < 0 else
           f"failed with exit status {code} (its message is above)")
    print(f"zasjax: error: worker {root} of {n} (pid {procs[root].pid}) {why}; the others "
          f"were stopped; {resume}", file=sys.stderr)
    return 1
