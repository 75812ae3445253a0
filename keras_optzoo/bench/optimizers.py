"""The benchmark's optimizers: name, class, fixed settings, label, plot style,
and the learning-rate grid of the tuned protocol.

To add one, append a `BenchOptimizer` to `SPECS`; an entry whose class
`keras_optzoo.optimizers` does not have (yet) is left out, so `sophiag` joins
as soon as `keras_optzoo.optimizers.SophiaG` exists.
"""

from typing import NamedTuple

import keras

from keras_optzoo import optimizers as _optimizers

# The tuned protocol's grid: each optimizer's default learning rate (read from
# its class, so the grid follows changed defaults) times these factors, half
# a decade apart, one decade either side.
GRID_FACTORS = (0.1, 0.316, 1.0, 3.16, 10.0)


class BenchOptimizer(NamedTuple):
    name: str  # the --optimizers name
    class_name: str  # in keras_optzoo.optimizers
    label: str  # in tables and legends
    family: str  # "first-order", "adaptive", "second-order" or "kronecker"
    kwargs: dict = {}  # fixed settings the benchmark passes besides the learning rate
    full_batch: bool = False  # GD: one step per epoch on the whole training set
    cost: float = 1.0  # an epoch's time relative to SGD's (for the ETA)

    @property
    def cls(self):
        return getattr(_optimizers, self.class_name)

    def make(self, learning_rate=None):
        kwargs = dict(self.kwargs)
        if learning_rate is not None:
            kwargs["learning_rate"] = learning_rate
        return self.cls(**kwargs)

    @property
    def second_order(self):
        return issubclass(self.cls, _optimizers.SecondOrderOptimizer)

    def default_learning_rate(self):
        """The class's default learning rate (with `kwargs`), to 3 significant digits."""
        value = float(keras.ops.convert_to_numpy(self.make().learning_rate))
        return float(f"{value:.3g}")

    def grid(self):
        return [float(f"{self.default_learning_rate() * f:.3g}") for f in GRID_FACTORS]


SPECS = (
    BenchOptimizer("gd", "SGD", "GD (full batch)", "first-order", full_batch=True),
    BenchOptimizer("sgd", "SGD", "SGD (mini-batch)", "first-order"),
    BenchOptimizer("momentum", "Momentum", "Momentum", "first-order"),
    BenchOptimizer("nesterov", "Nesterov", "Nesterov (NAG)", "first-order"),
    BenchOptimizer("adagrad", "Adagrad", "AdaGrad", "adaptive"),
    BenchOptimizer("rmsprop", "RMSprop", "RMSProp", "adaptive"),
    BenchOptimizer("adam", "Adam", "Adam", "adaptive"),
    BenchOptimizer("amsgrad", "AMSGrad", "AMSGrad", "adaptive"),
    BenchOptimizer("adamw", "AdamW", "AdamW", "adaptive"),
    # Damping 1: a step of at most lr * |g| where the curvature estimate is ~0.
    BenchOptimizer("newton", "Newton", "Newton (diagonal)", "second-order", dict(damping=1.0, num_probes=2),
                   cost=3.0),
    BenchOptimizer("newton_cg", "Newton", "Newton-CG", "second-order",
                   dict(method="cg", damping=1.0, cg_iterations=5), cost=6.0),
    BenchOptimizer("hybrid", "Hybrid", "Hybrid (paper 000)", "second-order", cost=3.0),
    BenchOptimizer("adahessian", "AdaHessian", "AdaHessian", "second-order", cost=3.0),
    BenchOptimizer("sophiah", "SophiaH", "Sophia-H", "second-order", cost=3.0),
    BenchOptimizer("sophiag", "SophiaG", "Sophia-G", "second-order", cost=3.0),
    # Gradients only (plain compile), a factor per weight dimension.
    BenchOptimizer("soap", "SOAP", "SOAP", "kronecker", cost=4.0),
    BenchOptimizer("shampoo", "Shampoo", "Shampoo", "kronecker", cost=2.0),
)

AVAILABLE = {s.name: s for s in SPECS if hasattr(_optimizers, s.class_name)}
NAMES = tuple(AVAILABLE)
# The baselines that set the time-to-target targets and the "first-order"
# side of every verdict: not the curvature or Kronecker-factored methods.
FIRST_ORDER = tuple(n for n, s in AVAILABLE.items() if s.family in ("first-order", "adaptive"))


def label(name):
    return AVAILABLE[name].label


# 17 colours (Okabe-Ito, then Paul Tol's "muted" and "bright" sets) and one line
# style per family, so that no two optimizers look alike in black and white either.
COLORS = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#882255",
          "#999933", "#44AA99", "#AA4499", "#117733", "#332288", "#DDCC77", "#88CCEE", "#BBBBBB", "#EE3377")
LINESTYLES = {"first-order": "-", "adaptive": "--", "second-order": ":", "kronecker": "-."}
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p", "d", "8", "H", "1", "2")


def style(name):
    """Matplotlib keywords for `name`'s line: a colour and marker of its own, the family's dash."""
    i = list(AVAILABLE).index(name)
    return dict(color=COLORS[i], linestyle=LINESTYLES[AVAILABLE[name].family], marker=MARKERS[i],
                markersize=4, label=label(name))
