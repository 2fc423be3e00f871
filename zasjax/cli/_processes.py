"""How one `zasjax sweep` process takes part: alone, as the launcher of local workers, as
one of them, or joining a distributed job; and how many CPU devices it runs on."""

from __future__ import annotations

#: `--devices auto` gives one device per core from this width on, where each device loops over
#: its configurations (`_sweep._engines.LOOP_MIN_DIM`) and splitting them pays.
AUTO_MIN_DIM = 48


def processes_mode(args) -> str | None:
    """How this process takes part: None (alone), "launch" (start --processes workers),
    "worker" (one of them), "join" (--coordinator ...), "detect" (--distributed)."""
    from .._launch import launched

    explicit = [args.coordinator, args.num_processes, args.process_id]
    given = [o for o, v in zip(("--coordinator", "--num-processes", "--process-id"), explicit)
             if v is not None]
    if args.processes is not None:
        if args.processes < 1:
            raise ValueError(f"--processes must be >= 1, got {args.processes}")
        if args.distributed or given:
            raise ValueError("--processes starts its own workers; give it without "
                             "--distributed, --coordinator, --num-processes, --process-id")
        if launched():
            return "worker"
        return "launch" if args.processes > 1 else None
    if given:
        if args.distributed:
            raise ValueError("give --distributed (JAX finds the job) or --coordinator, "
                             "--num-processes and --process-id, not both")
        if len(given) < 3:
            missing = sorted({"--coordinator", "--num-processes", "--process-id"} - set(given))
            raise ValueError(f"{', '.join(given)} needs {' and '.join(missing)} too")
        host, sep, port = args.coordinator.rpartition(":")
        if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"--coordinator expects HOST:PORT, got {args.coordinator!r}")
        if args.num_processes < 1:
            raise ValueError(f"--num-processes must be >= 1, got {args.num_processes}")
        if not 0 <= args.process_id < args.num_processes:
            raise ValueError(f"--process-id must be in 0..{args.num_processes - 1}, got "
                             f"{args.process_id}")
        return "join"
    return "detect" if args.distributed else None


def devices_option(text: str | None) -> int | str | None:
    if text is None or text == "auto":
        return text
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"--devices expects a number >= 1 or 'auto', got {text!r}")
    return n


def device_count(option, dims, per_host: int = 1) -> int | None:
    """CPU devices per process for `--devices` (None: leave JAX's default), for a sweep of
    widths `dims`. `auto`: one
    per core (shared by the `per_host` processes of this machine) for widths from
    `AUTO_MIN_DIM`, where that is faster; one below it, where it is not."""
    from .._launch import cores

    if option != "auto":
        return option
    if max(dims) < AUTO_MIN_DIM:
        return None
    return max(cores() // per_host, 1)


def start_devices(n: int | None) -> None:
    # Before anything starts JAX's CPU backend: the count is fixed when it starts.
    if n is None:
        return
    import jax

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        raise ValueError("--devices: JAX's CPU backend had already started in this process; "
                         "set it before any JAX computation") from None
