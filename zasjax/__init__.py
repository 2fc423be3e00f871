"""zasjax: gradient-descent dynamics of deep linear (residual) networks in JAX."""

from importlib.metadata import PackageNotFoundError, version

from . import reproduce as reproduce
from ._inits import INITS as INITS, make_init as make_init
from ._network import (
    data_loss as data_loss,
    data_loss_and_grad as data_loss_and_grad,
    end_to_end as end_to_end,
    loss_and_grad as loss_and_grad,
    pad_depth as pad_depth,
    pad_square as pad_square,
    prefix_products as prefix_products,
    suffix_products as suffix_products,
    support_mask as support_mask,
    whitened_loss as whitened_loss,
)
from ._optimizers import OPTIMIZERS as OPTIMIZERS
from ._run import (
    CONVERGED as CONVERGED,
    DIVERGED as DIVERGED,
    MAX_ITERS as MAX_ITERS,
    STATUS_NAMES as STATUS_NAMES,
    Regression as Regression,
    RunResult as RunResult,
    RunState as RunState,
    Settings as Settings,
    Whitened as Whitened,
    advance as advance,
    init_state as init_state,
    run as run,
)
from ._targets import TARGETS as TARGETS, load_target as load_target, make_target as make_target

try:
    __version__ = version("zasjax")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
