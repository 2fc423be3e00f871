"""Sweeps: grids of gradient-descent runs, batched, sharded and resumable.

- `_spec`: the `SweepSpec`, every option of a sweep, checked; the resume identity;
- `_grid`: the `Grid`, its index (a configuration is a position) and a configuration's
  identity;
- `_plan`: capacity classes of depth, fixed batch sizes, memory, slices as position ranges;
- `_report`: `plan_sweep`, what a sweep would do (`--plan`);
- `_results`: where rows go (CSV, or Parquet parts for large sweeps), a full disk;
- `_engines`: what is batched, the full network or the exact mode reduction from ZAS;
- `_programs`: the full engine's compiled programs (initial state; a chunk of iterations);
- `_distributed`: devices and processes: the mesh, process 0 writes, the launcher;
- `_inflight`: per-configuration checkpoints;
- `_tuning`: learning-rate grids, the best rate, pruning;
- `_driver`: the host loop (`sweep`).
"""

from ._driver import sweep as sweep, sweep_problem as sweep_problem
from ._engines import BATCHINGS as BATCHINGS
from ._grid import (
    AUTO_LRS as AUTO_LRS,
    COLUMNS as COLUMNS,
    FILE_TARGET as FILE_TARGET,
    KEY_COLUMNS as KEY_COLUMNS,
    Grid as Grid,
    config_key as config_key,
    depth_lrs as depth_lrs,
    lr_grid as lr_grid,
)
from ._plan import (
    DEFAULT_RATIO as DEFAULT_RATIO,
    capacity as capacity,
    depth_classes as depth_classes,
)
from ._report import SweepPlan as SweepPlan, plan_sweep as plan_sweep
from ._spec import SweepSpec as SweepSpec
from ._tuning import best_per_config as best_per_config
