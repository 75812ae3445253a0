"""Per-parameter adaptive learning rates: AdaGrad and RMSProp (seeds 000-002)."""

import keras
from keras import ops

from keras_optzoo import _validation
from keras_optzoo.optimizers._base import OptzooOptimizer, register


@register
class Adagrad(OptzooOptimizer):
    """AdaGrad (Duchi et al. 2011; seed 001 eq. 7, seed 000 4.1, seed 002 5).

        G <- G + g^2
        theta <- theta - lr * g / (sqrt(G) + epsilon)

    epsilon sits outside the square root, as in seed 001 and
    `torch.optim.Adagrad`. Seeds 000 and 002, the Keras built-in and
    `optax.adagrad` write `lr / sqrt(G + epsilon)`; the two differ by terms of
    order epsilon/sqrt(G). G starts at `initial_accumulator_value` (0 as in
    torch and the paper; the Keras built-in and optax use 0.1, which shrinks
    the first steps: docs/guides/coming-from.md). `keras_compat=True` gives
    the Keras built-in's numbers.

    Args:
        learning_rate: lr; default 0.01 (seeds 000/001, torch), or 0.001
            (Keras's) with `keras_compat=True`.
        initial_accumulator_value: G_0 >= 0; default 0.0, or 0.1 (Keras's)
            with `keras_compat=True`.
        epsilon: a number > 0, default 1e-7 (Keras's default).
        keras_compat: False (default) computes the update above; True
            computes `keras.optimizers.Adagrad`'s,
            `theta <- theta - lr * g / sqrt(G + epsilon)`, and its defaults
            (lr 0.001, G_0 = 0.1) for the arguments not given, through the
            `keras.ops` code (no fused kernel): `Adagrad(keras_compat=True)`
            takes the steps of `keras.optimizers.Adagrad()`.
    {{base_kwargs}}
    """

    _hyperparameters = ("initial_accumulator_value", "epsilon", "keras_compat")
    _slot_names = ("accumulator",)

    def __init__(self, learning_rate=None, initial_accumulator_value=None, epsilon=1e-7, keras_compat=False, **kwargs):
        keras_compat = _validation.boolean("keras_compat", keras_compat)
        if learning_rate is None:
            learning_rate = 0.001 if keras_compat else 0.01
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.keras_compat = keras_compat
        if initial_accumulator_value is None:
            initial_accumulator_value = 0.1 if self.keras_compat else 0.0
        self.initial_accumulator_value = _validation.non_negative(
            "initial_accumulator_value", initial_accumulator_value
        )
        self.epsilon = _validation.positive("epsilon", epsilon)

    def _initializer(self, slot_name):
        return keras.initializers.Constant(self.initial_accumulator_value)

    def _fused_spec(self):
        if self.keras_compat:  # epsilon inside the root: the keras.ops code below
            return None
        return "adagrad", {"epsilon": self.epsilon}

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        acc = self._slot("accumulator", variable)
        self.assign_add(acc, ops.square(g))
        if self.keras_compat:
            denom = ops.sqrt(ops.add(acc, self.epsilon))
        else:
            denom = ops.add(ops.sqrt(acc), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(g, lr), denom))


@register
class RMSprop(OptzooOptimizer):
    """RMSProp (Hinton 2012; seed 001 eqs. 8-9, seed 002 section 6).

        v <- rho * v + (1 - rho) * g^2
        theta <- theta - lr * g / (sqrt(v) + epsilon)

    epsilon sits outside the square root as in `torch.optim.RMSprop` (seeds
    001/002 and the Keras built-in put it inside: `lr / sqrt(v + epsilon)`).
    v starts at zero. `keras_compat=True` gives the Keras built-in's numbers.

    `momentum` and `centered` are the options of `keras.optimizers.RMSprop`
    and `torch.optim.RMSprop` (off by default, as there):

        a <- rho * a + (1 - rho) * g                 (centered)
        d = sqrt(v - a^2) + epsilon   (centered)  or  sqrt(v) + epsilon
        b <- momentum * b + g / d ;  theta <- theta - lr * b   (momentum > 0)

    which is torch's arithmetic; with `keras_compat=True`, Keras's
    (`b <- momentum * b + lr * g / sqrt(v - a^2 + epsilon)`, theta -= b).

    Args:
        learning_rate: lr, default 0.001.
        rho: the decay of the squared-gradient average, in [0, 1); default 0.9
            (Hinton's and Keras's value; torch uses 0.99).
        epsilon: a number > 0, default 1e-7.
        momentum: in [0, 1), default 0.
        centered: bool, default False.
        keras_compat: False (default) computes the update above; True
            computes `keras.optimizers.RMSprop`'s,
            `theta <- theta - lr * g / sqrt(v + epsilon)`, through the
            `keras.ops` code (no fused kernel).
    {{base_kwargs}}
    """

    _hyperparameters = ("rho", "momentum", "epsilon", "centered", "keras_compat")

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False,
                 keras_compat=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.rho = _validation.unit_interval("rho", rho)
        self.momentum = _validation.unit_interval("momentum", momentum)
        self.epsilon = _validation.positive("epsilon", epsilon)
        self.centered = _validation.boolean("centered", centered)
        self.keras_compat = _validation.boolean("keras_compat", keras_compat)

    @property
    def _slot_names(self):
        return ("velocity",) + (("average_gradient",) if self.centered else ()) + (
            ("momentum",) if self.momentum > 0 else ())

    def _fused_spec(self):
        # Epsilon inside the root (keras_compat), momentum or centering: the keras.ops code below.
        if self.keras_compat or self.momentum > 0 or self.centered:
            return None
        return "rmsprop", {"rho": self.rho, "epsilon": self.epsilon}

    def update_step(self, gradient, variable, learning_rate):
        if self._fused_update_one(gradient, variable, learning_rate):
            return
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        v = self._slot("velocity", variable)
        if self.keras_compat:  # Keras's order of operations, for its exact numbers
            self.assign(v, ops.add(ops.multiply(self.rho, v), ops.multiply(1 - self.rho, ops.square(g))))
            denominator = ops.add(v, self.epsilon)
            if self.centered:
                a = self._slot("average_gradient", variable)
                self.assign(a, ops.add(ops.multiply(self.rho, a), ops.multiply(1 - self.rho, g)))
                denominator = v - ops.square(a) + self.epsilon
            increment = ops.divide(ops.multiply(lr, g), ops.sqrt(denominator))
            if self.momentum > 0:
                b = self._slot("momentum", variable)
                self.assign(b, ops.add(ops.multiply(self.momentum, b), increment))
                increment = b
            self.assign_sub(variable, increment)
            return
        self._ema(v, ops.square(g), self.rho)
        second = v
        if self.centered:
            a = self._slot("average_gradient", variable)
            self._ema(a, g, self.rho)
            second = ops.subtract(v, ops.square(a))
        denom = ops.add(ops.sqrt(second), self.epsilon)
        if self.momentum > 0:
            b = self._slot("momentum", variable)
            self.assign(b, ops.add(ops.multiply(b, self.momentum), ops.divide(g, denom)))
            self.assign_sub(variable, ops.multiply(b, lr))
            return
        self.assign_sub(variable, ops.divide(ops.multiply(g, lr), denom))
