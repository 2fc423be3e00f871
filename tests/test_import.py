"""`import zasjax` leaves the process alone; the `zasjax` command and `use_cpu_loop_kernels`
set XLA:CPU's loop option, before JAX starts."""

import ast
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


def test_backend_started_is_jaxs_own_answer_and_leaves_every_setting_as_it_was():
    # JAX's private flag, only to inspect: `backend_started` itself asks through public API.
    got = _python("""
import json, os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=3"
import jax
from jax._src import xla_bridge
from zasjax._compilation import backend_started
settings = {k: repr(v) for k, v in jax.config.values.items()}
cold = [backend_started(), xla_bridge.backends_are_initialized()]
same = settings == {k: repr(v) for k, v in jax.config.values.items()}
jax.numpy.ones(1).block_until_ready()
warm = [backend_started(), xla_bridge.backends_are_initialized()]
print(json.dumps({"cold": cold, "warm": warm, "same": same, "devices": jax.device_count()}))
""")
    assert got == {"cold": [False, False], "warm": [True, True], "same": True, "devices": 3}


# ---------------------------------------------------------------------------------------------
# The house: zasjax's import graph, read from the source
# ---------------------------------------------------------------------------------------------
#
# Every module of the package is a node; `from . import x`, `from .x import y`,
# `from ..x import y`, `import zasjax.x` and `from zasjax.x import y` are edges, at module
# level and inside functions alike: a lazy import runs whenever its function does, so a
# circle through it is still a circle (it works only by the order in which modules happen to
# load), and a module that imports another lazily still stands on it. Imports under
# `if TYPE_CHECKING:` count too. Not seen: `importlib.import_module` of a computed name (the
# `zasjax` command's subcommands, the studies of `reproduce`), which loads a module from
# above on purpose.
#
# Floors are counted over rooms: a top-level module is a room, and so is each subpackage
# (`_sweep/`, `reproduce/`, `cli/`) as a whole, as docs/DESIGN.md draws them. The package's
# own `__init__.py` (the public surface, which imports everything) and `__main__.py` stand
# above the house and are no floor; no module may import `zasjax` itself.
# floor = 1 + the longest chain of imports below a room. To see them:
# `pytest tests/test_import.py -k house -rP`.

PACKAGE = os.path.join(ROOT, "zasjax")
MAX_FLOORS = 9
TOP = ("zasjax", "zasjax.__main__")

#: Circles known to remain, to be removed by the owner of the files: (importer, imported) ->
#: why. The test is an expected failure while these edges, and only these, close circles.


def _modules() -> dict[str, str]:
    """Dotted name -> path of every module of the package (a package by its name)."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                out[name.removesuffix(".__init__")] = path
    return out


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: line of the first such import}, from the source."""
    modules = _modules()

    def home(name: str) -> str:  # `zasjax._sweep._grid.Grid` -> `zasjax._sweep._grid`
        while name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1]
                                    + ([node.module] if node.module else []))
                elif (node.module or "").split(".")[0] == "zasjax":
                    base = node.module
                else:
                    continue
                # `from pkg import x`: the submodule x if there is one, else pkg itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "zasjax"]
            else:
                continue
            for target in map(home, targets):
                if target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def _room(module: str) -> str:
    """The room of a module: itself at the top level, its subpackage below that."""
    return ".".join(module.split(".")[:2])


def _circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def floors(graph: dict[str, dict[str, int]]) -> dict[str, int]:
    """room -> floor: 1 + the longest chain of imports below it (the package's `__init__`
    and `__main__` left out). Needs a graph of rooms without a circle."""
    rooms: dict[str, set[str]] = {}
    for module, edges in graph.items():
        if module in TOP:
            continue
        below = rooms.setdefault(_room(module), set())
        below.update(_room(m) for m in edges if m not in TOP and _room(m) != _room(module))
    assert not _circles(rooms), f"the rooms import each other in a circle: {_circles(rooms)}"
    memo: dict[str, int] = {}

    def floor(room):
        if room not in memo:
            memo[room] = 1 + max(map(floor, rooms[room]), default=0)
        return memo[room]

    return {room: floor(room) for room in sorted(rooms)}


def _show(graph, edges) -> str:
    return "; ".join(f"{a} -> {b} (line {graph[a][b]})" for a, b in edges)


def test_the_package_init_is_imported_from_nowhere_inside():
    graph = import_graph()
    up = [(m, "zasjax") for m in sorted(graph) if "zasjax" in graph[m]]
    assert not up, f"imports of zasjax/__init__.py from inside the package: {_show(graph, up)}"


def test_no_module_imports_itself_back_through_a_circle():
    circles = _circles(import_graph())
    assert not circles, f"circles of imports: {circles}"


def test_the_house_has_at_most_nine_floors():
    built = floors(import_graph())
    by_floor: dict[int, list[str]] = {}
    for room, floor in built.items():
        by_floor.setdefault(floor, []).append(room.removeprefix("zasjax."))
    print(f"\n{len(built)} rooms on {max(by_floor)} floors:")
    for floor in sorted(by_floor, reverse=True):
        print(f"  floor {floor}: {' '.join(by_floor[floor])}")
    assert max(by_floor) <= MAX_FLOORS, by_floor
