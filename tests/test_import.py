"""`import zasjax` leaves the process alone; the `zasjax` command and `use_cpu_loop_kernels`
set XLA:CPU's loop option, before JAX starts."""

import json
import os
import subprocess
import sys

import pytest

from zasjax import _compilation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAG = f"--xla_backend_extra_options={_compilation.LOOP_OPTION}={_compilation.SMALL_LOOP_BYTES}"


def _python(code: str) -> dict:
    """Run `code` in a new Python without XLA_FLAGS or zasjax's switches; its JSON line."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and not k.startswith("ZASJAX")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": ROOT}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_changes_no_environment_variable_and_no_jax_setting():
    got = _python("""
import json, os
env = dict(os.environ)
import jax
from jax._src import xla_bridge
settings = {k: repr(v) for k, v in jax.config.values.items()}
import zasjax
after = {k: repr(v) for k, v in jax.config.values.items()}
print(json.dumps({
    "XLA_FLAGS": os.environ.get("XLA_FLAGS"),
    "env": sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
    "settings": sorted(k for k in set(settings) | set(after)
                       if settings.get(k) != after.get(k)),
    "backend": xla_bridge.backends_are_initialized()}))
""")
    assert got == {"XLA_FLAGS": None, "env": [], "settings": [], "backend": False}


def test_the_command_sets_the_loop_option_before_jax_starts():
    got = _python("""
import json, os
from jax._src import xla_bridge
from zasjax.cli import main
try:
    main(["--version"])
except SystemExit:
    pass
print(json.dumps({"XLA_FLAGS": os.environ.get("XLA_FLAGS"),
                  "backend": xla_bridge.backends_are_initialized()}))
""")
    assert got == {"XLA_FLAGS": FLAG, "backend": False}


def test_the_opt_in_adds_the_option_once_and_keeps_the_users_flags(monkeypatch):
    monkeypatch.setattr(_compilation, "backend_started", lambda: False)
    env = {"XLA_FLAGS": "--xla_cpu_use_thunk_runtime=true"}
    assert _compilation.use_cpu_loop_kernels(env)
    assert _compilation.use_cpu_loop_kernels(env)  # again: no second copy
    assert env["XLA_FLAGS"] == f"--xla_cpu_use_thunk_runtime=true {FLAG}"
    theirs = {"XLA_FLAGS": "--xla_backend_extra_options=a=1"}
    assert not _compilation.use_cpu_loop_kernels(theirs)
    assert theirs == {"XLA_FLAGS": "--xla_backend_extra_options=a=1"}
    kept = {"ZASJAX_KEEP_XLA_FLAGS": "1"}
    assert not _compilation.use_cpu_loop_kernels(kept) and "XLA_FLAGS" not in kept


def test_the_opt_in_after_jax_started_is_an_error_not_a_silent_no_op():
    import jax

    jax.devices()  # the backend is up: XLA has read its flags
    with pytest.raises(RuntimeError, match="before JAX's first computation"):
        _compilation.use_cpu_loop_kernels({})
    assert _compilation.use_cpu_loop_kernels({"XLA_FLAGS": FLAG})  # already in effect: fine
