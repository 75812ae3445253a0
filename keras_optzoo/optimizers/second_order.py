"""Second-order optimizers: Newton, the seed-000 Hybrid method, AdaHessian and
Sophia-H. They need Hessian information, which Keras's `apply(grads, vars)`
does not carry: train with `keras_optzoo.with_curvature(model)`, whose train
step writes the estimate into the optimizer's `curvature` slots before
`apply` (every `hessian_update_interval` steps)."""

import contextlib
from typing import NamedTuple

import keras
from keras import ops

from keras_optzoo import _keras_compat as compat
from keras_optzoo import _validation, backend
from keras_optzoo.optimizers._base import OptzooOptimizer, register

WRAP_MESSAGE = (
    "{name} is a second-order optimizer and needs Hessian information, which a plain "
    "keras.Model does not compute. Wrap the model: `model = keras_optzoo.with_curvature(model)` "
    "before `compile`/`fit` (or, in a custom loop, call `optimizer.set_curvature(values)` "
    "before `apply`)."
)


class CurvatureRequest(NamedTuple):
    """What a second-order optimizer needs written into its curvature slots
    on a refresh step.

    kind: "diagonal", Hutchinson's estimate of diag(H) from `num_probes`
        Rademacher probes (probe j at step t drawn from seed + 7919 j and t);
        "gauss_newton_bartlett", Sophia-G's B * g_hat^2 with g_hat the
        gradient at labels sampled from the model's predictions (seed, t);
        "newton", the direction d of a damped Newton step and the new
        damping (every step): `method` "diagonal" (d = g / (|D| + damping),
        D refreshed every `interval` steps) or "cg" (`cg_iterations` steps
        of conjugate gradients on (B + damping I) d = g, preconditioned by
        |D| + damping when `precondition`), with B the Hessian or, with
        `matrix="ggn"`, the generalized Gauss-Newton matrix;
        `adaptive_damping`: the Levenberg-Marquardt rule.
    interval: a refresh every `interval` steps (when `is_refresh(step)`).
    """

    kind: str
    interval: int
    num_probes: int = 0
    seed: int = 0
    method: str = "diagonal"
    matrix: str = "hessian"
    cg_iterations: int = 0
    precondition: bool = False
    adaptive_damping: bool = False


class SecondOrderOptimizer(OptzooOptimizer):
    """Holds the curvature input (one `curvature` slot per variable) and the
    settings of its estimation.

    The contract with the train step of `with_curvature` models (and with a
    custom loop), the only thing the two share:

    - `curvature_request()`: a `CurvatureRequest`, what to compute;
    - `is_refresh(step)`: whether step `step` (0-based, = `iterations` before
      the update) recomputes it; graph-safe (a tensor in, a tensor out; a
      Python int in, a bool out), so a jitted step decides inside `cond`;
    - `curvature_slots()`: the variables the result is written into, before
      `apply`;
    - `host_step()`: `iterations` as a Python int kept on the host, for
      backends that decide a refresh in Python (torch) without reading the
      device every step;
    - `set_curvature(values)`: the same by hand, for custom loops;
    - `supplied_by_train_step()`: called by the train step, which then
      writes `curvature_slots()` before every `apply`;
    - `no_refresh()`: a context in which a train step that is known, when
      it is traced, not to refresh (JAX's plain program, TensorFlow's
      non-refresh branch) builds its update: the curvature averages are
      then left out of it entirely (no pass over them) instead of being
      kept by a decay of 1 (`known_not_to_refresh` says so to kernels).

    Args (shared):
        hessian_update_interval: k >= 1; the estimate is recomputed when
            `iterations % k == 0` and reused in between.
        num_probes: Rademacher probes per Hutchinson estimate (>= 1).
        seed: seed of the probes (probe i at step t is a function of seed, i, t).
    """

    _curvature_hyperparameters = ("hessian_update_interval", "num_probes", "seed")

    def __init__(self, learning_rate, hessian_update_interval=1, num_probes=1, seed=0, **kwargs):
        if kwargs.get("gradient_accumulation_steps"):
            raise ValueError(
                f"`gradient_accumulation_steps` is not supported by {type(self).__name__}: the Hessian "
                "estimate is of one batch. Use a larger batch instead."
            )
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.hessian_update_interval = _validation.integer("hessian_update_interval", hessian_update_interval, low=1)
        self.num_probes = _validation.integer("num_probes", num_probes, low=1)
        self.seed = _validation.integer("seed", seed, low=0)
        self.curvature_supplied = False
        self._from_train_step = False
        self._host_step = None
        self._refreshing = None
        self._hyperparameters = self._curvature_hyperparameters + type(self)._hyperparameters

    # -- the contract ----------------------------------------------------------
    def curvature_request(self):
        return CurvatureRequest("diagonal", self.hessian_update_interval, self.num_probes, self.seed)

    def is_refresh(self, step):
        k = self.hessian_update_interval
        if isinstance(step, int):
            return step % k == 0
        return ops.equal(ops.mod(ops.cast(step, "int32"), k), 0)

    def curvature_slots(self):
        return list(self._curvature)

    def host_step(self):
        if not backend.HOST_STEPS:  # the update runs traced: no host-side count to keep
            return int(ops.convert_to_numpy(self.iterations))
        if self._host_step is None:  # first use, or the state was loaded: read it once
            self._host_step = int(ops.convert_to_numpy(self.iterations))
        return self._host_step

    def set_curvature(self, values):
        """Sets the curvature input by hand (custom loops): a list shaped like
        the variables (the diagonal estimate D; for Newton-CG the direction)."""
        for slot, value in zip(self._curvature, values):
            slot.assign(ops.cast(value, slot.dtype))
        self.curvature_supplied = True
        self._from_train_step = False

    def supplied_by_train_step(self):
        """Called by the `with_curvature` train step, which writes
        `curvature_slots()` itself before every `apply`."""
        self.curvature_supplied = True
        self._from_train_step = True

    @contextlib.contextmanager
    def no_refresh(self):
        """Within it, updates are built for a step that does not refresh."""
        self._refreshing = False
        try:
            yield
        finally:
            self._refreshing = None

    @property
    def known_not_to_refresh(self):
        """True within `no_refresh()`."""
        return self._refreshing is False

    # -- Keras hooks -------------------------------------------------------------
    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._curvature = [self.add_variable_from_reference(v, "curvature") for v in var_list]
        self._host_step = None

    def load_own_variables(self, store):
        super().load_own_variables(store)
        self._host_step = None

    def apply(self, grads, trainable_variables=None):
        if not self.curvature_supplied:
            raise RuntimeError(WRAP_MESSAGE.format(name=type(self).__name__))
        # TensorFlow gives an Embedding's gradient as IndexedSlices; the
        # curvature-scaled updates are dense.
        result = super().apply([backend.dense(g) for g in grads], trainable_variables)
        if self._host_step is not None:
            # A skipped step (skip_nonfinite) leaves `iterations`: read it again.
            self._host_step = None if self.skip_nonfinite else self._host_step + 1
        return result

    # -- shared arithmetic -------------------------------------------------------
    def _curvature_of(self, variable):
        return self._curvature[compat.variable_index(self, variable)]

    def _refresh_count(self, dtype):
        """How many estimates have been made up to this step (1-based step t):
        floor((t - 1) / k) + 1."""
        t = ops.cast(self.iterations, "int32")
        return ops.cast(ops.floor_divide(t, self.hessian_update_interval) + 1, dtype)

    def _ema_on_refresh(self, average, value, decay, dtype):
        """An EMA step on refresh steps only (decay 1, no change, in between;
        nothing at all where the step is known not to refresh)."""
        if self.known_not_to_refresh:
            return
        refresh = ops.cast(self.is_refresh(self.iterations), dtype)
        self._ema(average, value, 1.0 - refresh * (1.0 - decay))


# Newton's default learning rate per method (the sweep in docs/defaults.md).
DEFAULT_NEWTON_LR = {"diagonal": 1.0, "cg": 0.5}


@register
class Newton(SecondOrderOptimizer):
    """Damped Newton's method (paper 000, section 4.2: theta -= lr H^-1 g),
    with Levenberg-Marquardt damping (Martens 2010, Hessian-free optimization).

    Each step computes a direction d and takes theta <- theta - lr * d:

    - `method="diagonal"`: d = g / (|D| + lambda), D the Hutchinson diagonal
      of the curvature matrix B (refreshed every `hessian_update_interval`
      steps from `num_probes` probes);
    - `method="cg"`: d solves (B + lambda I) d = g by `cg_iterations` steps
      of conjugate gradients from d = 0 (one product B v each; stopped early
      at a direction of non-positive curvature), preconditioned by
      |D| + lambda (one more product) when `precondition`.

    B is the Hessian (`curvature="hessian"`) or the generalized Gauss-Newton
    matrix J^T H_L J (`curvature="ggn"`: J the Jacobian of the model's
    outputs, H_L the Hessian of the compiled loss in the outputs; positive
    semi-definite for convex losses, as in Hessian-free optimization; the
    regularization losses' curvature is left to the damping).

    `adaptive_damping` (default True): lambda starts at `damping` and follows
    the Levenberg-Marquardt rule on the reduction ratio
    rho = (f(theta - d) - f(theta)) / (-g.d + d.B d / 2), both on the step's
    batch: lambda * 3/2 when rho < 1/4, * 2/3 when rho > 3/4 (within
    [1e-6, 1e6]), and a direction that raises the batch loss is not taken
    (d = 0 for that step). This costs one forward pass per step. The ratio
    is that of the full step d (lr 1, the default). lambda is optimizer
    state (saved and restored with it); `damping_value` reads it.
    With `adaptive_damping=False` lambda stays at `damping`.

    Clipping (`clipnorm`, `clipvalue`, `global_clipnorm`) applies to d, the
    step actually taken; `weight_decay` is Keras's decoupled decay.

    Defaults: method "diagonal", curvature "hessian", damping 1.0 (the start
    of the adaptive lambda), adaptive damping, 20 CG iterations,
    preconditioning on, interval 1; `learning_rate=None` means 1.0 (a full
    step) for method="diagonal" and 0.5 for method="cg" (docs/defaults.md:
    a full CG step solves the mini-batch's quadratic model so closely that
    it overfits the batch; on the MNIST MLP over 5 seeds and 96 steps, lr 1
    ended at 81-87 % training accuracy, lr 0.5 at 89-92 %). The damping's
    reduction ratio is always that of the full direction d.

    {{base_kwargs}}
    """

    _hyperparameters = ("method", "curvature", "damping", "adaptive_damping", "cg_iterations", "precondition")

    def __init__(self, learning_rate=None, method="diagonal", curvature="hessian", damping=1.0, adaptive_damping=True,
                 cg_iterations=20, precondition=True, **kwargs):
        v = _validation
        method = v.choice("method", method, ("diagonal", "cg"))
        if learning_rate is None:
            learning_rate = DEFAULT_NEWTON_LR[method]
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.method = method
        self.curvature = v.choice("curvature", curvature, ("hessian", "ggn"))
        self.damping = v.positive("damping", damping)
        self.cg_iterations = v.integer("cg_iterations", cg_iterations, low=1)
        for arg, value in (("adaptive_damping", adaptive_damping), ("precondition", precondition)):
            if not isinstance(value, bool):
                raise TypeError(f"`{arg}` must be True or False; received {value!r}.")
        self.adaptive_damping, self.precondition = adaptive_damping, precondition
        if self.method == "cg" and self.hessian_update_interval != 1:
            raise ValueError(
                "`hessian_update_interval` must be 1 with method='cg' (the CG direction depends on "
                f"the current gradient); received {self.hessian_update_interval}."
            )

    def curvature_request(self):
        return CurvatureRequest(
            "newton", self.hessian_update_interval, self.num_probes, self.seed, method=self.method,
            matrix=self.curvature, cg_iterations=self.cg_iterations, precondition=self.precondition,
            adaptive_damping=self.adaptive_damping,
        )  # fmt: skip

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._damping = self.add_variable((), initializer=keras.initializers.Constant(self.damping), name="damping")
        self._diagonal = []
        if self.method == "diagonal":
            self._diagonal = [self.add_variable_from_reference(v, "diagonal") for v in var_list]

    def curvature_slots(self):
        """The directions d (one per variable), lambda, and for
        method="diagonal" the diagonal estimates D."""
        return list(self._curvature) + [self._damping] + list(self._diagonal)

    def set_curvature(self, values):
        """Custom loops: method="diagonal" takes D (the step is then
        g / (|D| + lambda) at the current lambda), method="cg" the direction d."""
        super().set_curvature(values)
        if self.method == "diagonal":
            for slot, value in zip(self._diagonal, values):
                slot.assign(ops.cast(value, slot.dtype))

    @property
    def damping_value(self):
        """The current damping lambda (the adaptive one, once built)."""
        return float(ops.convert_to_numpy(self._damping)) if self.built else self.damping

    def apply(self, grads, trainable_variables=None):
        if not self.built and trainable_variables is not None:
            self.build(list(trainable_variables))
        if self.curvature_supplied and not self._from_train_step and self.method == "diagonal":
            lam = ops.convert_to_tensor(self._damping)
            directions = [ops.divide(ops.cast(backend.dense(g), d.dtype), ops.add(ops.abs(d), ops.cast(lam, d.dtype)))
                          for g, d in zip(grads, self._diagonal)]  # fmt: skip
        else:
            directions = [c.value for c in self._curvature]
        # The direction goes where Keras expects the gradient, so that its
        # clipping (and the non-finite checks) act on the step actually taken.
        return super().apply(directions, trainable_variables)

    def _fused_spec(self):
        return ("sgd", {})

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        self.assign_sub(variable, ops.multiply(ops.cast(gradient, variable.dtype), lr))


@register
class Hybrid(SecondOrderOptimizer):
    """Seed 000's proposed method (section 5), made precise.

    With g the mini-batch gradient of the L2-regularized loss and D the
    Hutchinson estimate of diag(H) (refreshed every k steps, r refreshes so
    far, t the step):

        g <- g + l2 * theta,  D <- D + l2          (5.4: L2, coupled, in g and H)
        m <- beta_1 m + (1 - beta_1) g             (5.1: momentum, EMA form)
        v <- beta_2 v + (1 - beta_2) g^2           (5.2: per-parameter adaptive rate)
        h <- beta_3 h + (1 - beta_3) |D|           (5.2: Hessian information; on refresh steps)
        m_hat = m / (1 - beta_1^t), v_hat = v / (1 - beta_2^t), h_hat = h / (1 - beta_3^r)
        theta <- theta - lr * m_hat / (max(sqrt(v_hat), h_hat) + epsilon)

    Why: 5.1 asks for an EMA momentum (seed 000's own equation); 5.2 asks for
    both a gradient-based per-parameter rate and H^-1. The denominator takes
    the larger of the two: in flat or noisy directions (h_hat < sqrt(v_hat))
    the step is Adam's, in sharp directions it is a Newton step on the
    momentum, lr * m_hat / h_hat, which is shorter. So Hybrid never steps
    further than Adam would, and |D| with an EMA keeps H^-1 positive and
    smooth, avoiding Newton's blow-ups at saddles (seed 000, 4.2). 5.3
    (mini-batches) is how `fit` feeds it; 5.4's adaptive stopping is
    `keras_optzoo.callbacks.AdaptiveStopping`.

    Defaults: lr 0.04, betas 0.9 / 0.999 / 0.9, epsilon 1e-7, l2 0 (use
    `weight_decay` for decoupled decay instead), interval 1; chosen by the
    sweeps in docs/defaults.md (the rule never steps further than Adam at the
    same lr, so it takes a larger lr than Adam's 1e-3: at 1e-3 it trails
    Adam; at 0.04 with a faster curvature average, beta_3 0.9, it trains
    the MNIST MLP and CNN to a lower loss than `Adam()` on 5 seeds on every
    backend; 0.05 did too except one torch CNN seed, which it left at 1.76).

    {{base_kwargs}}
    """

    _hyperparameters = ("beta_1", "beta_2", "beta_3", "epsilon", "l2")
    _slot_names = ("momentum", "velocity", "hessian")

    def __init__(self, learning_rate=0.04, beta_1=0.9, beta_2=0.999, beta_3=0.9, epsilon=1e-7, l2=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        v = _validation
        self.beta_1, self.beta_2, self.beta_3 = (
            v.unit_interval("beta_1", beta_1), v.unit_interval("beta_2", beta_2), v.unit_interval("beta_3", beta_3)
        )
        self.epsilon = v.positive("epsilon", epsilon)
        self.l2 = v.non_negative("l2", l2)

    def _fused_spec(self):
        return "hybrid", {
            "beta_1": self.beta_1, "beta_2": self.beta_2, "beta_3": self.beta_3, "epsilon": self.epsilon, "l2": self.l2,
        }  # fmt: skip

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        d = self._curvature_of(variable)
        if self.l2:  # skipped entirely at the default l2 = 0
            g = ops.add(g, ops.multiply(variable, self.l2))
            d = ops.add(d, self.l2)
        d = ops.abs(d)
        m, v, h = (self._slot(n, variable) for n in ("momentum", "velocity", "hessian"))
        self._ema(m, g, self.beta_1)
        self._ema(v, ops.square(g), self.beta_2)
        self._ema_on_refresh(h, d, self.beta_3, dtype)
        m_hat = m / self._bias_correction(self.beta_1, dtype)
        v_hat = v / self._bias_correction(self.beta_2, dtype)
        h_hat = h / (1.0 - ops.power(ops.cast(self.beta_3, dtype), self._refresh_count(dtype)))
        denom = ops.add(ops.maximum(ops.sqrt(v_hat), h_hat), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m_hat, lr), denom))


def spatial_average(d):
    """AdaHessian's spatial averaging of |D| for convolution kernels. Keras lays
    kernels out as kernel_size + (in_channels, filters), so the average runs
    over the leading ndim - 2 axes (torch's layout would be the trailing ones)."""
    rank = len(d.shape)
    if rank <= 2:
        return d
    return ops.mean(d, axis=tuple(range(rank - 2)), keepdims=True) * ops.ones_like(d)


WARMUP = 10  # AdaHessian's default warm-up steps (docs/defaults.md, "AdaHessian on CNNs it was not tuned on")


@register
class AdaHessian(SecondOrderOptimizer):
    """AdaHessian (Yao et al., AAAI 2021).

        D_s = spatial_average(|D|)                  (conv kernels; see `spatial_average`)
        m <- beta_1 m + (1 - beta_1) g
        v <- beta_2 v + (1 - beta_2) D_s^2          (on refresh steps)
        theta <- theta - lr_t * (m / (1 - beta_1^t)) / ((sqrt(v / (1 - beta_2^r)))^hessian_power + epsilon)
        lr_t = lr * min(1, t / warmup_steps)        (lr_t = lr when warmup_steps = 0)

    with r the number of refreshes so far and t the 1-based step. Weight
    decay, if any, is Keras's decoupled `weight_decay` (the reference
    implementation's AdamW-style decay; the warm-up does not scale it). A
    learning-rate schedule gives lr, which the warm-up then scales.
    Defaults: lr 0.1, betas 0.5 / 0.999, epsilon 0.1, hessian_power 1,
    interval 1, warmup_steps 10, from the sweeps in docs/defaults.md.
    The warm-up (not in the paper): the first steps' curvature average
    holds one or two single-probe estimates, near zero for some entries,
    where the step is lr * m / epsilon = m; without it the batch loss
    jumped to 6-13 (Adam's largest: 2.5-4.5) in the first 20 steps on
    MNIST CNNs with BatchNormalization, and one of 5 seeds diverged on a
    32/64-filter CNN (benchmarks/stability.py, docs/defaults.md). The paper's lr 0.15 with
    epsilon 1e-4 diverges on the MNIST MLP and CNN (steps of lr * m / 1e-4
    where the Hutchinson estimate is near zero); epsilon 0.1 bounds the step
    in flat directions to lr * m / 0.1 and leaves the Newton-like step
    lr * m / |D| where the curvature is larger. beta_1 0.5 (the paper: 0.9):
    with a step this close to Newton's, a long momentum overshoots on a
    BatchNorm CNN (beta_1 0.9 beat Adam on 1 of 5 torch seeds, 0.5 on all
    15 seeds of three backends). lr 0.1 is the stable side of an edge: lr
    0.12 diverged on 2 of 5 CNN seeds (before the warm-up); lower it, or
    lengthen the warm-up, if the loss spikes.

    {{base_kwargs}}
    """

    _hyperparameters = ("beta_1", "beta_2", "epsilon", "hessian_power", "warmup_steps")
    _slot_names = ("momentum", "velocity")

    def __init__(self, learning_rate=0.1, beta_1=0.5, beta_2=0.999, epsilon=0.1, hessian_power=1.0, warmup_steps=WARMUP,
                 **kwargs):  # fmt: skip
        super().__init__(learning_rate=learning_rate, **kwargs)
        v = _validation
        self.beta_1, self.beta_2 = v.unit_interval("beta_1", beta_1), v.unit_interval("beta_2", beta_2)
        self.epsilon = v.positive("epsilon", epsilon)
        self.hessian_power = v.number("hessian_power", hessian_power, low=0.0, high=1.0, low_open=True)
        self.warmup_steps = v.integer("warmup_steps", warmup_steps, low=0)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # The warm-up scales the step of every path (fused kernels, per-variable
        # updates, the stateless JAX step) from the same place.
        if self.warmup_steps:
            ramp = ops.cast(self.iterations + 1, learning_rate.dtype) / float(self.warmup_steps)
            learning_rate = learning_rate * ops.minimum(ramp, 1.0)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def _fused_spec(self):
        hp = {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
        return "adahessian", dict(hp, hessian_power=self.hessian_power)

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        d = spatial_average(ops.abs(self._curvature_of(variable)))
        m, v = self._slot("momentum", variable), self._slot("velocity", variable)
        self._ema(m, g, self.beta_1)
        self._ema_on_refresh(v, ops.square(d), self.beta_2, dtype)
        c1 = self._bias_correction(self.beta_1, dtype)
        c2 = 1.0 - ops.power(ops.cast(self.beta_2, dtype), self._refresh_count(dtype))
        denom = ops.add(ops.power(ops.sqrt(v / c2), self.hessian_power), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / c1), denom))


@register
class SophiaH(SecondOrderOptimizer):
    """Sophia with the Hutchinson estimator (Liu et al., 2023).

        m <- beta_1 m + (1 - beta_1) g
        h <- beta_2 h + (1 - beta_2) D              (on refresh steps, every k)
        theta <- theta - lr * clip(m / max(gamma * h, epsilon), -1, 1)

    Each estimate is used in the step that computes it (one widely used
    implementation folds it in only at the next refresh, k - 1 steps stale, and
    divides by epsilon until then). h starts at zero and is not bias-corrected
    (as in the paper), so early steps are clipped sign steps of size lr. With
    interval k, h's EMA advances once per k steps: its per-step decay is
    beta_2^(1/k) (0.99 at k = 10 is 0.999 per step; horizon k / (1 - beta_2)
    = 1,000 steps). Weight decay: Keras's decoupled `weight_decay`.

    Defaults: beta_2 0.99 and interval 10 as in the paper; gamma (`rho` in
    the paper's code) 0.05, epsilon 1e-12, no weight decay; lr 1e-3 and
    beta_1 0.9 from the multi-seed sweep in docs/defaults.md (the paper's
    beta_1 0.965 averages over ~30 steps, so a short run takes its first
    steps on a stale momentum: on the MNIST CNN, 2e-3 / 0.965 lost to Adam on
    4 of 5 seeds, 1e-3 / 0.9 beat it on 9 of 10 on TensorFlow and torch; the
    paper's lr 2e-4 and gamma 0.1 are for GPT-2 pre-training).

    {{base_kwargs}}
    """

    _hyperparameters = ("beta_1", "beta_2", "gamma", "epsilon")
    _slot_names = ("momentum", "hessian")

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.99, gamma=0.05, epsilon=1e-12,
                 hessian_update_interval=10, **kwargs):
        super().__init__(learning_rate=learning_rate, hessian_update_interval=hessian_update_interval, **kwargs)
        v = _validation
        self.beta_1, self.beta_2 = v.unit_interval("beta_1", beta_1), v.unit_interval("beta_2", beta_2)
        self.gamma = v.positive("gamma", gamma)
        self.epsilon = v.positive("epsilon", epsilon)

    def _fused_spec(self):
        return "sophia", {"beta_1": self.beta_1, "beta_2": self.beta_2, "gamma": self.gamma, "epsilon": self.epsilon}

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        m, h = self._slot("momentum", variable), self._slot("hessian", variable)
        self._ema(m, g, self.beta_1)
        d = self._curvature_of(variable)
        self._ema_on_refresh(h, d, self.beta_2, dtype)
        ratio = ops.divide(m, ops.maximum(ops.multiply(h, self.gamma), self.epsilon))
        self.assign_sub(variable, ops.multiply(ops.clip(ratio, -1.0, 1.0), lr))


@register
class SophiaG(SophiaH):
    """Sophia with the Gauss-Newton-Bartlett estimator (Liu et al., 2023).

    The update is SophiaH's (same symbols; `SophiaH`'s docstring):

        m <- beta_1 m + (1 - beta_1) g
        h <- beta_2 h + (1 - beta_2) B * g_hat^2    (on refresh steps, every k)
        theta <- theta - lr * clip(m / max(gamma * h, epsilon), -1, 1)

    with g_hat the mini-batch gradient of the compiled loss at labels
    sampled from the model's own predictive distribution (softmax or
    sigmoid of its outputs, a function of `seed` and the step), and B the
    batch size: an estimate of the diagonal of the Gauss-Newton matrix that
    needs one extra backward pass and no second-order derivative. It needs a
    crossentropy loss (sparse categorical, categorical or binary; from
    probabilities or `from_logits`); the curvature of the regularization
    losses and sample weights are not in the estimate. Under tf.distribute
    each replica draws the labels of its share of the batch from its own
    stream (the same distribution as on one device, not the same draws).

    Defaults: SophiaH's (betas 0.9 / 0.99, interval 10, gamma 0.05, the
    paper's Sophia-G setting, epsilon 1e-12, lr 1e-3 from the defaults
    sweep in docs/defaults.md, no weight decay).

    {{base_kwargs}}
    """

    def curvature_request(self):
        return CurvatureRequest("gauss_newton_bartlett", self.hessian_update_interval, 1, self.seed)
