"""Multi-process sweeps: joining JAX's distributed runtime, and a local launcher.

Every process of a sweep runs the same command; `jax.distributed.initialize` joins them
(the coordinator is process 0) and JAX's collectives (gloo on CPU, NCCL on GPU) carry the
sharded configuration axis between them, exactly as on a cluster. Process 0 writes.

`launch` is the local convenience behind `zasjax sweep ... --processes N`: it starts N
workers on this machine, each the same command, told its place by the environment
(`ZASJAX_COORDINATOR`, `ZASJAX_PROCESS_ID`, `ZASJAX_NUM_PROCESSES`, `ZASJAX_DEVICES`),
waits for them, forwards SIGINT/SIGTERM, and stops them all with one line if one fails.
A launcher killed outright (SIGKILL) cannot stop its workers, so each worker watches it
(`stop_with_launcher`) and stops within a second once it is gone; the folder then resumes
as after any kill.

Exit status of a worker whose partner vanished: `PEER_LOST` (75). Run by the launcher it
says nothing (the launcher names the worker that failed); run on its own it prints one line.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

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
    import jax

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
