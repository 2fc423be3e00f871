"""The grid of a sweep: init × target × dim × depth × seed × learning rate × observations ×
init scale, checked on construction, and the identity of one configuration (its row key)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .._inits import INITS
from .._lists import parse_floats
from .._models import MODELS
from .._objectives import OBJECTIVES, Objective, check_width, objective_class, objective_ref
from .._optimizers import check_optimizer
from .._options import option
from .._schema import KEY, MEASURES, columns, config_key  # noqa: F401 (re-exported)
from .._targets import TARGETS

#: A configuration's identity and a row's columns: declared once, in `zasjax._schema`.
KEY_COLUMNS = KEY
COLUMNS = columns()
FILE_TARGET = "file"
#: The random rank-`rank` target of deep matrix factorization (`_targets.low_rank_target`).
LOW_RANK = "low-rank"
#: The rank of the low-rank target when the grid gives none.
DEFAULT_RANK = 5
#: The target of an objective on vectors that draws its own truth (`LinearRegression`: β*).
PLANTED = "planted"
#: The grid axes of counts (one axis, two names: observed entries or measurements of a
#: matrix, samples of a regression).
COUNT_AXES = ("observations", "samples")
#: `--covariates`: the draws of a regression's design matrix.
COVARIATES = ("gaussian", "rademacher")

#: Seeds and iteration counts live in int32 arrays on the device.
INT32_MAX = 2**31 - 1

#: `Grid(lrs=AUTO_LRS)`: each depth gets its own learning rates, `depth_lrs(L)`.
AUTO_LRS = "auto"


def lr_grid(lo: float = 2.0**-14, hi: float = 1.0, per_octave: int = 2) -> list[float]:
    """Log-spaced learning rates from `lo` to `hi`, `per_octave` per factor of two."""
    n = round(math.log2(hi / lo) * per_octave)
    return [float(lo * 2.0 ** (i / per_octave)) for i in range(n + 1)]


def depth_lrs(depth: int) -> list[float]:
    """The default tuning grid at depth L: 2⁻¹⁴/L .. 2/L, two per octave, capped at 1.

    The stable learning rates shrink like 1/L (the sharpness at a solution grows like L
    s_max², see `zasjax._sharpness`), so a fixed grid would stop far above them at large
    depth. At L = 1 this is 2⁻¹⁴..1; η = 1 solves any target in one step from ZAS.
    """
    return [lr for lr in (x / depth for x in lr_grid(2.0**-14, 2.0)) if lr <= 1.0]


def _hyper(text: str, name: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--{name} expects NAME=VALUE, got {text!r}")
    try:
        return key, float(value)
    except ValueError:
        raise ValueError(f"--{name} {key} expects a number, got {value!r}") from None


@dataclass(frozen=True)
class Grid:
    """One product grid of configurations. Shapes (dims, depths) are static; the rest sweeps.

    `lrs`: one list for every depth; `AUTO_LRS` for `depth_lrs(L)` at each depth L; a
    mapping depth → its own list; or a mapping (seed, depth) → its own list, e.g. each
    random target's rates capped at its own stability bound. Mappings are stored as sorted
    `(key, lrs)` pairs and must list every depth (every (seed, depth) pair).

    Checked on construction: a value no run can use raises `ValueError` before anything is
    traced or written.
    """

    inits: Sequence[str] = option(("zas",), "comma list of initialisations", flag="--init")
    targets: Sequence[str] = option(("neg-identity",), "comma list of targets",
                                    flag="--target")
    dims: Sequence[int] = option((1,), "comma list of widths d", flag="--dim")
    depths: Sequence[int] = option((1, 2, 4, 8, 16), "depths: 1,2,8 or a:b (a..b-1)")
    seeds: Sequence[int] = option((0,), "seeds: 0,1 or 0:64")
    lrs: (Sequence[float] | str | Mapping[int, Sequence[float]]
          | Mapping[tuple[int, int], Sequence[float]]) = option(
        (0.01,), "learning rate(s), comma list (with --tune-lr and no --lr: 2^-14/L..2/L, "
                 "capped at 1, two per octave, at each depth L)", flag="--lr",
        parse=lambda text, name: tuple(parse_floats(text, name)), metavar="A,B,...")
    optimizer: str = option("gd", "gd, sgd, momentum, nesterov, adam")
    hyper: tuple = option((), "optimizer hyper-parameter, e.g. --opt-arg momentum=0.95 "
                              "(repeatable)", flag="--opt-arg", parse=_hyper,
                          metavar="NAME=VALUE", repeat=True)
    eps: float = option(1e-10, "convergence threshold on R")
    max_iters: int = option(10_000, "most iterations a configuration runs")
    init_scale: Sequence[float] | None = option(
        None, "noise/scale parameter of the init; a list is an axis (the small inits: "
              "‖W_{L:1}‖_F)", parse=lambda text, name: tuple(parse_floats(text, name)),
        metavar="A,B,...")
    objective: str | type[Objective] = option(
        "whitened", "whitened (all of Φ), completion (observed entries of Φ), sensing "
                    "(Gaussian measurements of Φ), regression (with --data-file), or "
                    "module:Class, a zasjax.Objective of your own",
        parse=lambda text, name: str(text), metavar="NAME")
    model: str = option("dense", "the parametrization: dense (the stacked network W_L⋯W_1) "
                                 "or diagonal (β = Πw₊ − Πw₋, with linear-regression)")
    init_shape: float = option(1.0, "diagonal network: w₋/w₊ at initialisation (1: β(0) = 0)")
    observations: Sequence[int] = option((), "observed entries (completion) or measurements "
                                             "(sensing) per run; a list is an axis")
    samples: Sequence[int] = option((), "samples n per run (linear-regression; rows show "
                                        "them as observations); a list is an axis")
    sparsity: int | None = option(None, "linear-regression: nonzeros k of the planted β* "
                                        "(default: all d)")
    magnitude: float = option(1.0, "linear-regression: |β*_i| on the support")
    covariates: str = option("gaussian", "linear-regression: gaussian or rademacher rows")
    noise: float = option(0.0, "linear-regression: label noise σ")
    rank: int | None = option(None, f"rank of the low-rank target (default {DEFAULT_RANK})")
    data: Mapping[str, np.ndarray] | None = dataclasses.field(
        default=None, compare=False, repr=False, metadata=dict(
            help="a .npz file of the objective's data by field name (whitened: phi; "
                 "regression: X, Y; completion: phi, observed; sensing: A, y, optional phi), "
                 "the same for every seed; its rows say target 'file'",
            flag="--data-file", parse=lambda path, name: str(path), metavar="DATA.npz",
            cli=True))
    target_matrix: np.ndarray | None = dataclasses.field(
        default=None, compare=False, repr=False, metadata=dict(
            help="a .npy matrix used as the target (d × d); its rows say target 'file'",
            flag="--target-file", parse=lambda path, name: str(path),
            metavar="PHI.npy", cli=True))

    def __post_init__(self):
        for name in ("inits", "targets", "dims", "depths", "seeds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.lrs, Mapping):
            key = lambda k: tuple(int(x) for x in k) if isinstance(k, Sequence) else int(k)
            pairs = [(key(k), tuple(v)) for k, v in self.lrs.items()]
            if len({isinstance(k, tuple) for k, _ in pairs}) > 1:
                raise ValueError(f"learning rates per depth are keyed by depth or by (seed, "
                                 f"depth), not a mix; got keys {list(self.lrs)}")
            object.__setattr__(self, "lrs", tuple(sorted(pairs)))
        elif self.lrs != AUTO_LRS:
            object.__setattr__(self, "lrs", tuple(self.lrs))
        object.__setattr__(self, "hyper", tuple(sorted(tuple(h) for h in self.hyper)))
        object.__setattr__(self, "observations", tuple(int(n) for n in self.observations))
        if self.samples:  # one count axis: samples are a regression's observations
            if self.observations:
                raise ValueError("give samples or observations, not both (one axis)")
            object.__setattr__(self, "observations", tuple(int(n) for n in self.samples))
            object.__setattr__(self, "samples", ())
        cls = objective_class(self.objective)  # ValueError for an unknown one
        model = MODELS.get(self.model)
        if model is not None and model.inits is not None and self.inits == ("zas",):
            object.__setattr__(self, "inits", model.inits[:1])  # the default, for this model
        if cls.acts_on == "vector" and self.targets == ("neg-identity",) and self.data is None:
            object.__setattr__(self, "targets", (PLANTED,))
        object.__setattr__(self, "objective", cls.name if OBJECTIVES.get(cls.name) is cls
                           else cls)
        if self.data is not None:
            if not isinstance(self.data, Mapping):
                raise ValueError(f"data must map the objective's field names to arrays, got "
                                 f"{type(self.data).__name__}")
            object.__setattr__(self, "data", {k: np.asarray(v) for k, v in self.data.items()})
            if self.targets == ("neg-identity",):  # the default: the data are the problem
                object.__setattr__(self, "targets", (FILE_TARGET,))
        if self.init_scale is not None:
            scales = self.init_scale if isinstance(self.init_scale, Sequence) else \
                (self.init_scale,)
            object.__setattr__(self, "init_scale", tuple(float(x) for x in scales))
        self.check()

    def check(self) -> None:
        """ValueError for any value a run cannot use."""
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; expected one of {sorted(MODELS)}")
        vector = self.objective_class.acts_on == "vector"
        inits = MODELS[self.model].inits or INITS
        targets = {PLANTED: 0} if vector else {**TARGETS, LOW_RANK: 0}
        for name, values, table in (("init", self.inits, inits),
                                    ("target", self.targets, {**targets, FILE_TARGET: 0})):
            if not values:
                raise ValueError(f"give at least one {name}")
            for v in values:
                if v not in table:
                    raise ValueError(f"unknown {name} {v!r}; expected one of {sorted(table)}")
        if FILE_TARGET in self.targets and self.target_matrix is None and self.data is None:
            raise ValueError("target 'file' needs a target matrix (--target-file) or data "
                             "(--data-file)")
        if isinstance(self.lrs, str) and self.lrs != AUTO_LRS:
            raise ValueError(f"lrs must be numbers or {AUTO_LRS!r}, got {self.lrs!r}")
        if self._per_depth():
            keys = [k for k, _ in self.lrs]
            if all(isinstance(k, tuple) and len(k) == 2 for k in keys):
                want, what = sorted(itertools.product(self.seeds, self.depths)), \
                    "(seed, depth) pairs"
            else:
                want, what = sorted(self.depths), "depths"
            if sorted(keys) != want:
                raise ValueError(f"learning rates per {what.split(' ')[0]} must list exactly "
                                 f"the {what} {want}, got {sorted(keys)}")
        seeds = self.seeds if self._per_seed() else self.seeds[:1]
        lists = [self.lrs_at(L, s) for L in self.depths for s in seeds] \
            if self.depths and seeds else [()]
        for name, values in (("init", self.inits), ("target", self.targets), ("dim", self.dims),
                             ("depth", self.depths), ("seed", self.seeds)) + tuple(
                                 ("lr", v) for v in lists):
            if not len(values):
                raise ValueError(f"give at least one {name}")
            seen = set()
            for v in values:
                if v in seen:
                    raise ValueError(f"{name} {v!r} is listed twice; each value may appear "
                                     "once (a repeat would duplicate rows)")
                seen.add(v)
        if min(self.dims) < 1:
            raise ValueError(f"every dim must be >= 1, got {list(self.dims)}")
        if min(self.depths) < 1:
            raise ValueError(f"every depth must be >= 1, got {list(self.depths)}")
        if min(self.seeds) < 0 or max(self.seeds) > INT32_MAX:
            raise ValueError(f"seeds must be in [0, {INT32_MAX}], got "
                             f"{min(self.seeds)}..{max(self.seeds)}")
        for lrs in lists:
            if not all(lr > 0 and math.isfinite(lr) for lr in lrs):
                raise ValueError(f"every learning rate must be a finite number > 0, got "
                                 f"{list(lrs)}")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be a finite number > 0, got {self.eps}")
        if not 1 <= self.max_iters <= INT32_MAX - 1:
            raise ValueError(f"max_iters must be in [1, {INT32_MAX - 1}], got {self.max_iters}")
        if self.init_scale is not None and not (
                self.init_scale and all(x > 0 and math.isfinite(x) for x in self.init_scale)):
            raise ValueError(f"init scale must be finite numbers > 0, got "
                             f"{list(self.init_scale)}")
        if len(set(self.init_scale or ())) != len(self.init_scale or ()):
            raise ValueError(f"init scale {list(self.init_scale)} lists a value twice")
        self._check_objective()
        check_optimizer(self.optimizer, dict(self.hyper))
        if self.target_matrix is not None:
            shape = np.shape(self.target_matrix)
            for d in self.dims:
                if shape != (d, d):
                    raise ValueError(f"target matrix has shape {shape}, expected ({d}, {d}) "
                                     f"to match dim {d}")

    @property
    def objective_class(self) -> type[Objective]:
        """The grid's objective, as its class."""
        return objective_class(self.objective)

    @property
    def target_rank(self) -> int:
        """The rank of the low-rank target."""
        return DEFAULT_RANK if self.rank is None else self.rank

    @property
    def parametrization(self):
        """The grid's parametrization (`_models`), with its options."""
        cls = MODELS[self.model]
        return cls(shape=self.init_shape) if cls.name == "diagonal" else cls()

    def _check_objective(self) -> None:
        cls = self.objective_class
        model = MODELS[self.model]
        if model.makes != cls.acts_on:
            fits = sorted(n for n, m in MODELS.items() if m.makes == cls.acts_on)
            raise ValueError(f"objective {cls.label()} acts on a {cls.acts_on}; model "
                             f"{self.model} makes a {model.makes} (use --model "
                             f"{' or '.join(fits) or '...'})")
        if self.model == "diagonal":
            self.parametrization  # checks the shape
            if self.init_scale is None:
                raise ValueError("the diagonal network needs its init scale α "
                                 "(--init-scale): every weight starts at α")
        elif self.init_shape != 1.0:
            raise ValueError(f"init_shape is an option of the diagonal network, not of "
                             f"model {self.model}")
        self._check_options(cls)
        if self.rank is not None:
            if LOW_RANK not in self.targets:
                raise ValueError(f"rank is the rank of target {LOW_RANK!r}; targets "
                                 f"{list(self.targets)} have none")
            if not (isinstance(self.rank, int) and 1 <= self.rank <= min(self.dims)):
                raise ValueError(f"rank must be an integer in [1, {min(self.dims)}] (the "
                                 f"smallest dim), got {self.rank!r}")
        elif LOW_RANK in self.targets and DEFAULT_RANK > min(self.dims):
            raise ValueError(f"the low-rank target's default rank {DEFAULT_RANK} exceeds dim "
                             f"{min(self.dims)}; give a rank in [1, {min(self.dims)}]")
        if self.data is not None and self.observations:
            raise ValueError("the data (--data-file) fix the observations; drop "
                             "--observations")
        count = next((a for a in cls.axes if a in COUNT_AXES), None)
        if count is None or self.data is not None:
            if self.observations:
                raise ValueError(f"observations (samples) are for objectives that read them "
                                 f"(completion, sensing, linear-regression); {cls.label()} "
                                 "sees all of its data")
        else:
            if not self.observations:
                raise ValueError(f"objective {cls.label()} needs the number of {count} "
                                 f"(--{count})")
            if len(set(self.observations)) != len(self.observations):
                raise ValueError(f"{count} {list(self.observations)} list a value twice")
            if count == "samples" and min(self.observations) < 1:
                raise ValueError(f"samples must be >= 1, got {list(self.observations)}")
            for d in self.dims if count == "observations" else ():
                if not all(1 <= n <= d * d for n in self.observations):
                    raise ValueError(f"observations must be in [1, {d * d}] (entries of a {d} "
                                     f"× {d} target), got {list(self.observations)}")
        if self.data is not None:
            self._check_data(cls)
        elif cls.needs_data:
            raise ValueError(f"objective {cls.label()} has no random draw: give its data "
                             f"(--data-file, Grid(data=...): fields {_fields(cls)})")

    def _check_options(self, cls) -> None:
        # The objective's static options: each left at its default unless the objective
        # reads it.
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in ("sparsity", "magnitude", "covariates", "noise"):
            if getattr(self, name) != defaults[name] and (
                    name not in cls.options or self.data is not None):
                raise ValueError(f"--{name} is an option of the draw of objective "
                                 f"linear-regression; {cls.label()}"
                                 + (" with data given" if self.data is not None else "")
                                 + " does not read it")
        if self.sparsity is not None and not (
                isinstance(self.sparsity, int) and 0 <= self.sparsity <= min(self.dims)):
            raise ValueError(f"sparsity must be an integer in [0, {min(self.dims)}] (the "
                             f"smallest dim d), got {self.sparsity!r}")
        if self.covariates not in COVARIATES:
            raise ValueError(f"covariates must be one of {list(COVARIATES)}, got "
                             f"{self.covariates!r}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise}")
        if not math.isfinite(self.magnitude):
            raise ValueError(f"magnitude must be a finite number, got {self.magnitude}")

    def fixed_objective(self, dtype=None) -> Objective | None:
        """The objective `data` describe (the same for every configuration), or None."""
        if self.data is None:
            return None
        import jax.numpy as jnp

        cast = lambda v: jnp.asarray(v, dtype) if dtype is not None and \
            np.issubdtype(v.dtype, np.floating) else jnp.asarray(v)
        return self.objective_class(**{k: cast(v) for k, v in self.data.items()})

    def _check_data(self, cls) -> None:
        fields = _fields(cls)
        unknown = sorted(set(self.data) - set(fields))
        if unknown:
            raise ValueError(f"data fields {unknown} are not fields of objective "
                             f"{cls.label()}; expected some of {fields}")
        if self.targets != (FILE_TARGET,):
            raise ValueError(f"data given (--data-file) are the problem: the targets must be "
                             f"({FILE_TARGET!r},), got {list(self.targets)}")
        if self.target_matrix is not None:
            raise ValueError("give --data-file or --target-file, not both")
        try:
            objective = self.fixed_objective()
        except TypeError as e:
            raise ValueError(f"data for objective {cls.label()}: {e}") from None
        for d in self.dims:
            check_width(objective, d)

    def configs(self) -> list[dict]:
        """Every configuration as a row dict with the `KEY_COLUMNS`, in the grid's order
        (init, target, dim, depth, observations, init scale, seed, lr). For small grids:
        a sweep never lists them all, it indexes them (`index`)."""
        return self.index.rows(np.arange(self.index.size))

    @cached_property
    def index(self) -> GridIndex:
        """The grid's configurations as integers 0..size-1, in the order of `configs`."""
        return GridIndex(self)

    def _per_depth(self) -> bool:
        return bool(self.lrs) and self.lrs != AUTO_LRS and isinstance(self.lrs[0], tuple)

    def _per_seed(self) -> bool:
        return self._per_depth() and isinstance(self.lrs[0][0], tuple)

    @cached_property
    def _lr_table(self) -> dict:
        # key → rates, built once: `configs` looks up every (depth, seed)
        return dict(self.lrs)

    def lrs_at(self, depth: int, seed: int | None = None) -> tuple[float, ...]:
        """The learning rates of depth `depth` (and `seed`, for rates keyed by seed)."""
        if self.lrs == AUTO_LRS:
            return tuple(depth_lrs(depth))
        if self._per_seed():
            if seed is None:
                raise ValueError("this grid's learning rates depend on the seed; give one")
            return self._lr_table.get((seed, depth), ())
        if self._per_depth():
            return self._lr_table.get(depth, ())
        return self.lrs

    def identity(self) -> dict:
        """Everything that changes a result, as JSON-able values (compared on resume)."""
        out = {}
        for f in self.__dataclass_fields__:
            v = getattr(self, f)
            out[f] = (None if v is None else np.asarray(v).tolist()) if f == "target_matrix" \
                else [list(x) if isinstance(x, tuple) else x for x in v] if isinstance(v, tuple) \
                else v
        out["hyper"] = [list(h) for h in self.hyper]
        out["objective"] = objective_ref(self.objective_class)
        if self.data is not None:  # large: its digest (and shapes) identify it
            out["data"] = {k: {"shape": list(v.shape), "dtype": v.dtype.name,
                               "sha256": hashlib.sha256(np.ascontiguousarray(v).tobytes())
                               .hexdigest()} for k, v in sorted(self.data.items())}
        return out


def _fields(cls) -> list[str]:
    # The data fields of an objective (`active` is the engine's, not data).
    return [f.name for f in dataclasses.fields(cls) if f.name != "active"
            and not f.metadata.get("static")]


class GridIndex:
    """Configurations as positions in the grid's order, without listing them.

    The order is init, target, dim, depth, observations, init scale, seed, lr (the lr list
    may depend on the depth and the seed). A *block* is one (init, target, dim, depth): a
    contiguous range of positions. A *group* is one block's (observations, init scale,
    seed): its learning rates, adjacent, the unit of learning-rate tuning. The host holds
    arrays over depths (and, for rates keyed by seed, depths × seeds), never over the grid.
    """

    def __init__(self, grid: Grid):
        self.grid = grid
        self.n_inner = len(grid.observations or (None,)) * len(grid.init_scale or (None,))
        self._depth_pos = {int(L): i for i, L in enumerate(grid.depths)}
        self._seed_pos = {int(s): i for i, s in enumerate(grid.seeds)}
        self._per_seed = grid._per_seed()
        # per depth: lrs (one list, or one per seed) and the count of one (obs, scale) part
        self._lrs = [self._depth_lrs(L) for L in grid.depths]
        if self._per_seed:
            self._seed_ends = [np.cumsum([len(x) for x in lrs]) for lrs in self._lrs]
            part = np.asarray([int(e[-1]) for e in self._seed_ends], np.int64)
        else:
            part = np.asarray([len(grid.seeds) * len(lrs) for lrs in self._lrs], np.int64)
        self.part = part                                   # per depth: one (obs, scale) part
        self.depth_count = part * self.n_inner             # per depth: one block
        self.depth_start = np.concatenate([[0], np.cumsum(self.depth_count)[:-1]])
        self.per_dim = int(self.depth_count.sum())         # one (init, target, dim)
        self.size = len(grid.inits) * len(grid.targets) * len(grid.dims) * self.per_dim

    def _depth_lrs(self, L: int):
        if self._per_seed:
            return [self.grid.lrs_at(L, s) for s in self.grid.seeds]
        return self.grid.lrs_at(L)

    def block(self, init: int, target: int, dim: int, depth: int) -> tuple[int, int]:
        """(start, count) of a block, by the positions of its init, target, dim and depth."""
        base = ((init * len(self.grid.targets) + target) * len(self.grid.dims) + dim)
        return (base * self.per_dim + int(self.depth_start[depth]),
                int(self.depth_count[depth]))

    def group_start(self, depth: int, offset: int) -> int:
        """The start of the group holding position `offset` of a block of depth position
        `depth` (an offset into the block)."""
        part = int(self.part[depth])
        k, r = divmod(offset, part)
        if self._per_seed:
            ends = self._seed_ends[depth]
            s = int(np.searchsorted(ends, r, side="right"))
            return k * part + (int(ends[s - 1]) if s else 0)
        n_lr = len(self._lrs[depth])
        return k * part + r // n_lr * n_lr

    def largest_group(self, depth: int) -> int:
        """The most learning rates one configuration of depth position `depth` has."""
        lrs = self._lrs[depth]
        return max(map(len, lrs)) if self._per_seed else len(lrs)

    def rows(self, positions) -> list[dict]:
        """The configurations at `positions` (integers in [0, size)), as row dicts."""
        g = self.grid
        q = np.asarray(positions, np.int64)
        head, r = np.divmod(q, self.per_dim)
        head, dim = np.divmod(head, len(g.dims))
        init, target = np.divmod(head, len(g.targets))
        depth = np.searchsorted(self.depth_start, r, side="right") - 1
        r = r - self.depth_start[depth]
        observations, scales = g.observations or (None,), g.init_scale or (None,)
        label = g.objective_class.label()
        out = []
        for i in range(len(q)):
            L = int(depth[i])
            part_i, rest = divmod(int(r[i]), int(self.part[L]))
            n_i, x_i = divmod(part_i, len(scales))
            if self._per_seed:
                ends = self._seed_ends[L]
                s = int(np.searchsorted(ends, rest, side="right"))
                lr = self._lrs[L][s][rest - (int(ends[s - 1]) if s else 0)]
            else:
                s, j = divmod(rest, len(self._lrs[L]))
                lr = self._lrs[L][j]
            out.append(dict(init=g.inits[init[i]], target=g.targets[target[i]],
                            dim=int(g.dims[dim[i]]), depth=int(g.depths[L]),
                            seed=int(g.seeds[s]), lr=float(lr), optimizer=g.optimizer,
                            objective=label, model=g.model, observations=observations[n_i],
                            init_scale=scales[x_i]))
        return out

    def position(self, row: dict) -> int:
        """The position of a configuration (a row, fresh or read back), or -1 if it is not
        one of this grid's."""
        g = self.grid
        try:
            key = dict(zip(KEY, config_key(row)))
            init, target = g.inits.index(key["init"]), g.targets.index(key["target"])
            dim, L = g.dims.index(key["dim"]), self._depth_pos[key["depth"]]
            s = self._seed_pos[key["seed"]]
            n = (g.observations or (None,)).index(key["observations"])
            x = (g.init_scale or (None,)).index(key["init_scale"])
        except (ValueError, KeyError):
            return -1
        if (key["optimizer"], key["objective"], key["model"]) != (
                g.optimizer, g.objective_class.label(), g.model):
            return -1
        lrs = self._lrs[L][s] if self._per_seed else self._lrs[L]
        try:
            j = lrs.index(key["lr"])
        except ValueError:
            return -1
        if self._per_seed:
            rest = (int(self._seed_ends[L][s - 1]) if s else 0) + j
        else:
            rest = s * len(lrs) + j
        start, _ = self.block(init, target, dim, L)
        return start + (n * len(g.init_scale or (None,)) + x) * int(self.part[L]) + rest
