"""Gradient descent and its momentum variants (seeds 000, 001, 002)."""

from keras import ops

from keras_optzoo import _validation
from keras_optzoo.optimizers._base import OptzooOptimizer, register


@register
class SGD(OptzooOptimizer):
    """Plain gradient descent.

        theta <- theta - lr * g

    Gradient descent (GD), stochastic gradient descent (SGD) and mini-batch
    gradient descent of the seeds are this same update; only the batch size
    differs: `model.fit(..., batch_size=len(x))` is GD, `batch_size=1` is SGD
    and `batch_size=n` is mini-batch (seed 001 eqs. 1, 2, 4; seed 000 3.1;
    seed 002 section 2).

    `momentum` and `nesterov` are `keras.optimizers.SGD`'s: with momentum
    > 0 this is `Momentum(form="classic")`, with `nesterov=True` too
    `Nesterov`, the same numbers as Keras's (and those classes' fused
    kernels), so a Keras recipe moves over unchanged.

    Args:
        learning_rate: lr, default 0.01 (Keras's and seed 001's setting).
        momentum: in [0, 1), default 0 (plain gradient descent).
        nesterov: bool, default False (used when momentum > 0).
    {{base_kwargs}}
    """

    _hyperparameters = ("momentum", "nesterov")
    _float16_variables = True

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = _validation.unit_interval("momentum", momentum)
        self.nesterov = _validation.boolean("nesterov", nesterov)

    @property
    def _slot_names(self):
        return ("velocity",) if self.momentum > 0 else ()

    def _fused_spec(self):
        if self.momentum > 0:
            return ("nesterov" if self.nesterov else "momentum"), {"momentum": self.momentum}
        return "sgd", {}

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        lr = ops.cast(learning_rate, variable.dtype)
        if self.momentum > 0:
            (_nesterov_step if self.nesterov else _classic_step)(self, gradient, variable, lr)
            return
        self.assign_sub(variable, ops.multiply(ops.cast(gradient, variable.dtype), lr))


def _classic_step(opt, gradient, variable, lr):
    """v <- momentum v + lr g; theta <- theta - v (Keras's and torch's SGD momentum)."""
    v = opt._slot("velocity", variable)
    opt.assign(v, ops.add(ops.multiply(v, opt.momentum), ops.multiply(ops.cast(gradient, variable.dtype), lr)))
    opt.assign_sub(variable, v)


def _nesterov_step(opt, gradient, variable, lr):
    """u <- momentum u + lr g; theta <- theta - (momentum u + lr g)."""
    step = ops.multiply(ops.cast(gradient, variable.dtype), lr)
    u = opt._slot("velocity", variable)
    opt.assign(u, ops.add(ops.multiply(u, opt.momentum), step))
    opt.assign_sub(variable, ops.add(ops.multiply(u, opt.momentum), step))


def _keras_nesterov(cls_name, nesterov, wanted):
    """`keras.optimizers.SGD`'s `nesterov` on Momentum / Nesterov: accepted
    when it names the class's own rule, else a pointer to the other class."""
    value = _validation.boolean("nesterov", nesterov)
    if value != wanted:
        other = "Nesterov" if value else "Momentum"
        raise ValueError(
            f"`nesterov={value}` asks for {other}'s update; {cls_name} computes the other one. Use "
            f"keras_optzoo.{other}(momentum=...) (or keras_optzoo.SGD(momentum=..., nesterov={value}))."
        )


@register
class Momentum(OptzooOptimizer):
    """Gradient descent with momentum, in either of the seeds' two forms.

    `form="classic"` (seed 001 eqs. 5-6, Polyak's heavy ball; the default):

        v <- momentum * v + lr * g
        theta <- theta - v

    `form="ema"` (seed 000 section 3.2 and 5.1, seed 002 section 4): the
    velocity is an exponential moving average of the gradients,

        v <- momentum * v + (1 - momentum) * g
        theta <- theta - lr * v

    With a constant lr, the EMA form equals the classic form run with
    lr * (1 - momentum): it takes steps about 1 / (1 - momentum) times smaller.
    The classic form is the default because it is what `keras.optimizers.SGD(
    momentum=...)` and `torch.optim.SGD(momentum=...)` compute, so switching
    from either gives the same numbers. Velocity starts at zero (torch starts
    its buffer at the first gradient, which is the same thing in the classic
    form).

    Args:
        learning_rate: lr, default 0.01.
        momentum: the decay of the velocity (beta in seed 000, gamma in seed
            001), in [0, 1); default 0.9.
        form: "classic" or "ema".
        nesterov: False (accepted for `keras.optimizers.SGD`'s signature;
            True raises, pointing to `Nesterov`).
    {{base_kwargs}}
    """

    _hyperparameters = ("momentum", "form")
    _slot_names = ("velocity",)
    _float16_variables = True
    FORMS = ("classic", "ema")

    def __init__(self, learning_rate=0.01, momentum=0.9, form="classic", nesterov=False, **kwargs):
        _keras_nesterov("Momentum", nesterov, False)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = _validation.unit_interval("momentum", momentum)
        self.form = _validation.choice("form", form, self.FORMS)

    def _fused_spec(self):
        return ("momentum", {"momentum": self.momentum}) if self.form == "classic" else None

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        lr = ops.cast(learning_rate, variable.dtype)
        if self.form == "classic":
            _classic_step(self, gradient, variable, lr)
            return
        v = self._slot("velocity", variable)
        self._ema(v, ops.cast(gradient, variable.dtype), self.momentum)
        self.assign_sub(variable, ops.multiply(v, lr))


@register
class Nesterov(OptzooOptimizer):
    """Nesterov's accelerated gradient (NAG, seed 001 section E).

    Seed 001 writes NAG with the gradient taken at the look-ahead point:

        v_{t+1} = mu v_t - lr grad f(x_t + mu v_t),    x_{t+1} = x_t + v_{t+1}

    Keras computes the gradient at the current value of each variable, so the
    variable here holds the look-ahead point phi_t = x_t + mu v_t (Sutskever et
    al. 2013). Substituting gives an update that only needs grad f(phi_t) = g:

        u <- mu * u + lr * g              (u = -v, the velocity)
        theta <- theta - (mu * u + lr * g)

    This is exactly `keras.optimizers.SGD(momentum=mu, nesterov=True)` and
    `torch.optim.SGD(momentum=mu, nesterov=True)` (with constant lr). At the
    end of training theta is the look-ahead point, which is also the point
    the method evaluates; the two differ by mu * v, which vanishes at
    convergence.

    Args:
        learning_rate: lr, default 0.01.
        momentum: mu in [0, 1), default 0.9.
        nesterov: True (accepted for `keras.optimizers.SGD`'s signature;
            False raises, pointing to `Momentum`).
    {{base_kwargs}}
    """

    _hyperparameters = ("momentum",)
    _slot_names = ("velocity",)
    _float16_variables = True

    def __init__(self, learning_rate=0.01, momentum=0.9, nesterov=True, **kwargs):
        _keras_nesterov("Nesterov", nesterov, True)
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = _validation.unit_interval("momentum", momentum)

    def _fused_spec(self):
        return "nesterov", {"momentum": self.momentum}

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        _nesterov_step(self, gradient, variable, ops.cast(learning_rate, variable.dtype))
