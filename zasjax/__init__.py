"""zasjax: gradient-descent dynamics of deep linear (residual) networks in JAX."""

from . import reproduce as reproduce
from ._baselines import (
    MissingExtraError as MissingExtraError,
    nuclear_norm_completion as nuclear_norm_completion,
    nuclear_norm_sensing as nuclear_norm_sensing,
)
from ._bench import BenchSpec as BenchSpec
from ._compare import GdFlowComparison as GdFlowComparison, compare_gd_flow as compare_gd_flow
from ._compilation import use_cpu_loop_kernels as use_cpu_loop_kernels
from ._data import load_fashion_mnist as load_fashion_mnist
from ._diagnostics import (
    EdgeOfStability as EdgeOfStability,
    Plateau as Plateau,
    diagnostics as diagnostics,
    learning_curve as learning_curve,
    plateau as plateau,
    trajectory as trajectory,
)
from ._errors import OutputError as OutputError
from ._flow import (
    FlowSolution as FlowSolution,
    FlowSpec as FlowSpec,
    gradient_flow as gradient_flow,
)
from ._implicit_bias import (
    diagonal_limit as diagonal_limit,
    min_l1_interpolant as min_l1_interpolant,
    min_l2_interpolant as min_l2_interpolant,
    q_alpha as q_alpha,
)
from ._inits import INITS as INITS, make_init as make_init
from ._learning_times import (
    Plateaus as Plateaus,
    learning_times as learning_times,
    mode_half_time as mode_half_time,
    mode_trajectory as mode_trajectory,
    plateaus as plateaus,
)
from ._load import load_sweep as load_sweep
from ._measures import (
    balancedness as balancedness,
    deficiency_margin as deficiency_margin,
    effective_rank as effective_rank,
    invariant_drift as invariant_drift,
    invariants as invariants,
    measures as measures,
    nuclear_norm as nuclear_norm,
    reconstruction_error as reconstruction_error,
    schatten_norm as schatten_norm,
    singular_values as singular_values,
    unobserved_error as unobserved_error,
)
from ._models import (
    MODELS as MODELS,
    Dense as Dense,
    Diagonal as Diagonal,
    Parametrization as Parametrization,
)
from ._modes import (
    ModeFlowSolution as ModeFlowSolution,
    ModeResult as ModeResult,
    mode_weights as mode_weights,
    modes_flow as modes_flow,
    run_modes as run_modes,
)
from ._network import (
    data_loss as data_loss,
    data_loss_and_grad as data_loss_and_grad,
    end_to_end as end_to_end,
    end_to_end_loss_and_grad as end_to_end_loss_and_grad,
    loss_and_grad as loss_and_grad,
    pad_depth as pad_depth,
    pad_square as pad_square,
    prefix_products as prefix_products,
    suffix_products as suffix_products,
    support_mask as support_mask,
    whitened_loss as whitened_loss,
)
from ._objectives import (
    OBJECTIVES as OBJECTIVES,
    Completion as Completion,
    LinearRegression as LinearRegression,
    Objective as Objective,
    Regression as Regression,
    Sensing as Sensing,
    Whitened as Whitened,
    completion_problem as completion_problem,
    observed_entries as observed_entries,
    sensing_matrices as sensing_matrices,
    sensing_problem as sensing_problem,
)
from ._optimizers import OPTIMIZERS as OPTIMIZERS
from ._plots import PlotSpec as PlotSpec
from ._resnet import (
    RESNET_INITS as RESNET_INITS,
    ResNet as ResNet,
    init_resnet as init_resnet,
    resnet_loss as resnet_loss,
)
from ._run import (
    RunResult as RunResult,
    RunState as RunState,
    Settings as Settings,
    advance as advance,
    init_state as init_state,
    run as run,
)
from ._sharpness import (
    Sharpness as Sharpness,
    sharpness as sharpness,
    zas_minimum as zas_minimum,
    zas_minimum_sharpness as zas_minimum_sharpness,
)
from ._status import (
    CONVERGED as CONVERGED,
    DIVERGED as DIVERGED,
    FINISHED as FINISHED,
    MAX_ITERS as MAX_ITERS,
    PRUNED as PRUNED,
    RUNNING as RUNNING,
    STATUS as STATUS,
    STATUS_NAMES as STATUS_NAMES,
)
from ._sweep import (
    Grid as Grid,
    SweepPlan as SweepPlan,
    SweepSpec as SweepSpec,
    best_per_config as best_per_config,
    lr_grid as lr_grid,
    plan_sweep as plan_sweep,
    sweep as sweep,
    sweep_problem as sweep_problem,
)
from ._targets import (
    TARGETS as TARGETS,
    load_target as load_target,
    low_rank_target as low_rank_target,
    make_target as make_target,
)
from ._theory import (
    arora_conditions as arora_conditions,
    check_arora_rate as check_arora_rate,
    check_flow_rate as check_flow_rate,
    check_gd_rate as check_gd_rate,
    zas_lr_bound as zas_lr_bound,
)
from ._train import TrainResult as TrainResult, train_resnet as train_resnet
from ._version import __version__ as __version__
from .reproduce._runner import ReproduceSpec as ReproduceSpec

#: The public names: every name bound above (the re-exports and `reproduce`); the API
#: reference of the documentation is generated from this list.
__all__ = sorted(n for n in dict(globals()) if not n.startswith("_"))
