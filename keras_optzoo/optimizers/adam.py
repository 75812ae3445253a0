"""The Adam family: Adam, AMSGrad and AdamW (seeds 001 and 002)."""

from keras import ops

from keras_optzoo import _validation
from keras_optzoo.optimizers._base import OptzooOptimizer, register


class _AdamBase(OptzooOptimizer):
    """Shared moments, bias correction and step of Adam, AMSGrad and AdamW."""

    _hyperparameters = ("beta_1", "beta_2", "epsilon", "amsgrad", "keras_compat")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False,
                 keras_compat=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta_1 = _validation.unit_interval("beta_1", beta_1)
        self.beta_2 = _validation.unit_interval("beta_2", beta_2)
        self.epsilon = _validation.positive("epsilon", epsilon)
        # `keras.optimizers.Adam`'s `amsgrad`: the AMSGrad update (a third slot).
        self.amsgrad = _validation.boolean("amsgrad", amsgrad)
        self.keras_compat = _validation.boolean("keras_compat", keras_compat)

    @property
    def _slot_names(self):
        return ("momentum", "velocity", "velocity_max") if self.amsgrad else ("momentum", "velocity")

    def _fused_spec(self):
        if self.keras_compat:  # Keras's epsilon placement: the keras.ops code below
            return None
        return "adam", {"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon, "amsgrad": self.amsgrad}

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        g = ops.cast(gradient, dtype)
        m = self._slot("momentum", variable)
        v = self._slot("velocity", variable)
        self._ema(m, g, self.beta_1)
        self._ema(v, ops.square(g), self.beta_2)
        if self.amsgrad:
            v_max = self._slot("velocity_max", variable)
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        # m_hat / (sqrt(v_hat) + eps) with m_hat = m / c1 and v_hat = v / c2,
        # rearranged so that only scalars carry the corrections:
        # (lr sqrt(c2) / c1) m / (sqrt(v) + eps sqrt(c2)).
        # keras_compat: Keras's "epsilon hat", added to sqrt(v) before the
        # correction, i.e. eps / sqrt(c2) in terms of v_hat.
        c1 = self._bias_correction(self.beta_1, dtype)
        sqrt_c2 = ops.sqrt(self._bias_correction(self.beta_2, dtype))
        denom = ops.add(ops.sqrt(v), self.epsilon if self.keras_compat else self.epsilon * sqrt_c2)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr * sqrt_c2 / c1), denom))


@register
class Adam(_AdamBase):
    """Adam (Kingma & Ba 2015; seed 001 section G, seed 002 section 7).

        m <- beta_1 * m + (1 - beta_1) * g
        v <- beta_2 * v + (1 - beta_2) * g^2
        m_hat = m / (1 - beta_1^t),   v_hat = v / (1 - beta_2^t)
        theta <- theta - lr * m_hat / (sqrt(v_hat) + epsilon)

    This is Algorithm 1 of the paper and `torch.optim.Adam`/`optax.adam`. The
    Keras built-in adds epsilon to sqrt(v) before the bias correction ("epsilon
    hat"), which equals ours with epsilon * sqrt(1 - beta_2^t); the difference
    is of order epsilon / sqrt(v_hat). Seed 002 writes sqrt(v_hat + epsilon).
    The difference shows where |g| is near epsilon, e.g. on rarely-hit
    embedding rows (docs/guides/coming-from.md);
    `keras_compat=True` gives the Keras built-in's numbers.

    Args:
        learning_rate: lr, default 0.001.
        beta_1: moment decay in [0, 1), default 0.9.
        beta_2: moment decay in [0, 1), default 0.999.
        epsilon: a number > 0, default 1e-7 (Keras's default; torch uses 1e-8).
        amsgrad: bool, default False; True is `AMSGrad` (as Keras's
            `amsgrad=True`).
        keras_compat: False (default) puts epsilon after the bias correction
            as above; True computes `keras.optimizers.Adam`'s arithmetic,
            `lr * sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)`,
            through the `keras.ops` code (no fused kernel), so a tuned Keras
            recipe keeps its numbers.
    {{base_kwargs}}
    """


@register
class AMSGrad(_AdamBase):
    """AMSGrad (Reddi et al. 2018; seed 001 section H).

        m <- beta_1 * m + (1 - beta_1) * g
        v <- beta_2 * v + (1 - beta_2) * g^2
        v_max <- max(v_max, v)
        theta <- theta - lr * (m / (1 - beta_1^t)) / (sqrt(v_max / (1 - beta_2^t)) + epsilon)

    Three slots (m, v, v_max). The bias corrections follow
    `torch.optim.Adam(amsgrad=True)` and `keras.optimizers.Adam(amsgrad=True)`;
    seed 001 and the paper omit them (they matter only for the first ~1/(1 -
    beta_2) steps). optax.amsgrad takes the max of the bias-corrected v
    instead, which differs during those first steps.

    Args:
        learning_rate: lr, default 0.001.
        beta_1: moment decay in [0, 1), default 0.9.
        beta_2: moment decay in [0, 1), default 0.999.
        epsilon: a number > 0, default 1e-7.
        amsgrad: True (accepted for `keras.optimizers.Adam`'s signature;
            False raises, pointing to `Adam`).
        keras_compat: True computes `keras.optimizers.Adam(amsgrad=True)`'s
            arithmetic (epsilon before the bias correction); see `Adam`.
    {{base_kwargs}}
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=True,
                 keras_compat=False, **kwargs):
        if _validation.boolean("amsgrad", amsgrad) is not True:
            raise ValueError("`amsgrad=False` is Adam's update; use keras_optzoo.Adam (AMSGrad always keeps v_max).")
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=True,
                         keras_compat=keras_compat, **kwargs)


@register
class AdamW(_AdamBase):
    """AdamW, Adam with decoupled weight decay (Loshchilov & Hutter 2019;
    seed 002 section 8).

        theta <- theta - lr * weight_decay * theta
        theta <- Adam step (see `Adam`)

    The decay uses theta before the Adam step, so this is seed 002's
    `w - lr * m_hat / (sqrt(v_hat) + eps) - lr * lambda * w` (seed 002 writes
    epsilon inside the root) and `torch.optim.AdamW`. The decay is Keras's own
    decoupled `weight_decay` mechanism, so `exclude_from_weight_decay` works.

    Args:
        learning_rate: lr, default 0.001.
        weight_decay: lambda >= 0, default 0.004 (Keras's default; torch 0.01).
        beta_1: moment decay in [0, 1), default 0.9.
        beta_2: moment decay in [0, 1), default 0.999.
        epsilon: a number > 0, default 1e-7.
        amsgrad: bool, default False; True takes the AMSGrad maximum, as
            Keras's `AdamW(amsgrad=True)`.
        keras_compat: True computes `keras.optimizers.AdamW`'s arithmetic
            (epsilon before the bias correction); see `Adam`.
    {{base_kwargs}}
    """

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, keras_compat=False, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, keras_compat=keras_compat, **kwargs)
