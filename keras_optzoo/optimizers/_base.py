"""The base class every keras_optzoo optimizer derives from, and the small
shared pieces of arithmetic (EMA, bias correction) used by several of them."""

import keras
from keras import ops

from keras_optzoo import _keras_compat as compat
from keras_optzoo import _validation, backend

BASE_KWARGS_DOC = """
    Base keyword arguments (all passed through to `keras.optimizers.Optimizer`):
    `weight_decay` (decoupled: `theta -= lr * weight_decay * theta` before the
    update, as in Keras), `clipnorm`, `clipvalue`, `global_clipnorm`,
    `use_ema`, `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
    `gradient_accumulation_steps`, `name`. `learning_rate` may be a float, a
    `keras.optimizers.schedules.LearningRateSchedule` or a zero-argument
    callable.
    `fused` (default True): run the update through the backend's fused
    kernel where one exists for this algorithm (torch: `torch._fused_*` /
    `torch._foreach_*`; TensorFlow: its `ResourceApply*` training ops); False
    always runs the `keras.ops` reference code. Both give the same numbers
    to float32 rounding; JAX always uses the `keras.ops` code (XLA fuses it).
    `skip_nonfinite` (default False, as in Keras): skip every step whose
    gradients hold an inf or NaN, leaving variables, slots and `iterations`
    unchanged, and count it in `optimizer.nonfinite_steps`. With False such
    a step is applied and the NaN spreads, as with the Keras built-ins;
    `keras.optimizers.LossScaleOptimizer` skips such steps on its own.
"""


def register(cls):
    """Registers ``cls`` so `.keras` files load it without `custom_objects`."""
    if cls.__doc__:
        cls.__doc__ = cls.__doc__.replace("{{base_kwargs}}", BASE_KWARGS_DOC)
    return keras.saving.register_keras_serializable(package="keras_optzoo")(cls)


class OptzooOptimizer(keras.optimizers.Optimizer):
    """Validates the base keywords and provides slot and config helpers.

    Subclasses list their own hyperparameters in ``_hyperparameters`` (written
    into ``get_config`` automatically) and the names of their per-variable
    state in ``_slot_names`` (created by ``build``, one zero-initialised slot
    per variable and name, read back with ``self._slot(name, variable)``).
    """

    _hyperparameters = ()
    _slot_names = ()
    # Whether the update is safe on float16 variables (no division by an
    # average of squares that underflows in float16).
    _float16_variables = False

    def __init__(
        self,
        learning_rate,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        fused=True,
        skip_nonfinite=False,
        **kwargs,
    ):
        v = _validation
        for arg, value in (("use_ema", use_ema), ("fused", fused), ("skip_nonfinite", skip_nonfinite)):
            if not isinstance(value, bool):
                raise TypeError(f"`{arg}` must be True or False; received {value!r}.")
        optional = {
            "clipnorm": clipnorm,
            "clipvalue": clipvalue,
            "global_clipnorm": global_clipnorm,
            "loss_scale_factor": loss_scale_factor,
        }
        # Cleaned to Python floats/ints (a NumPy int64 clipnorm would make a
        # float64 tensor inside Keras's clipping on TensorFlow).
        optional = {arg: None if value is None else v.positive(arg, value) for arg, value in optional.items()}
        if gradient_accumulation_steps is not None:
            gradient_accumulation_steps = v.integer("gradient_accumulation_steps", gradient_accumulation_steps, low=2)
        if ema_overwrite_frequency is not None:
            ema_overwrite_frequency = v.integer("ema_overwrite_frequency", ema_overwrite_frequency, low=1)
        super().__init__(
            learning_rate=v.learning_rate(learning_rate),
            weight_decay=v.optional_non_negative("weight_decay", weight_decay),
            clipnorm=optional["clipnorm"],
            clipvalue=optional["clipvalue"],
            global_clipnorm=optional["global_clipnorm"],
            use_ema=use_ema,
            ema_momentum=v.number("ema_momentum", ema_momentum, low=0.0, high=1.0),
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=optional["loss_scale_factor"],
            gradient_accumulation_steps=gradient_accumulation_steps,
            name=name,
            **kwargs,
        )
        self.fused = fused
        self.skip_nonfinite = skip_nonfinite
        self._in_stateless_apply = False

    # -- input checks and non-finite gradients ---------------------------------
    def apply(self, grads, trainable_variables=None):
        grads = list(grads)
        if trainable_variables is not None:
            trainable_variables = list(trainable_variables)
            _check_gradients(grads, trainable_variables)
        elif self.built:
            _check_gradients(grads, compat.built_variables(self))
        if not self.skip_nonfinite or self._in_stateless_apply:
            return super().apply(grads, trainable_variables)
        if not self.built and trainable_variables is not None:
            self.build(trainable_variables)
        # Skip the whole step (variables, slots, iterations) when any gradient
        # holds an inf or NaN, and count it.
        return backend.cond_effects(
            _all_finite(grads),
            lambda: super(OptzooOptimizer, self).apply(grads, trainable_variables),
            lambda: self._nonfinite_steps.assign_add(1),
        )

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        """JAX's pure update. With `skip_nonfinite`, a step with non-finite
        gradients returns the inputs unchanged but for the skip counter."""
        self._in_stateless_apply = True
        try:
            if not self.skip_nonfinite:
                return super().stateless_apply(optimizer_variables, grads, trainable_variables)
            index = [id(v) for v in self.variables].index(id(self._nonfinite_steps))

            def skip():
                values = list(optimizer_variables)
                values[index] = values[index] + 1
                return list(trainable_variables), values

            return ops.cond(
                _all_finite(grads),
                lambda: super(OptzooOptimizer, self).stateless_apply(optimizer_variables, grads, trainable_variables),
                skip,
            )
        finally:
            self._in_stateless_apply = False

    @property
    def nonfinite_steps(self):
        """How many steps `skip_nonfinite` has skipped (0 when it is off)."""
        if not self.skip_nonfinite or not self.built:
            return 0
        return int(ops.convert_to_numpy(self._nonfinite_steps))

    # -- slots ---------------------------------------------------------------
    def build(self, var_list):
        if self.built:
            return
        for v in var_list:
            dtype = keras.backend.standardize_dtype(v.dtype)
            if "float" not in dtype:
                raise TypeError(
                    f"{type(self).__name__} updates floating-point variables only; variable "
                    f"'{_path(v)}' has dtype {dtype}. Make it non-trainable or leave it out of the "
                    "variables passed to the optimizer."
                )
            if dtype == "float16" and not self._float16_variables:
                raise TypeError(
                    f"{type(self).__name__} cannot update float16 variables (variable '{_path(v)}'): its "
                    "running averages of squared gradients or curvature underflow in float16 (below 6e-8 "
                    "they are 0) and the step divides by them, giving inf/NaN. Keep the variables in "
                    "float32 with the 'mixed_float16' or 'mixed_bfloat16' dtype policy, or use SGD, "
                    "Momentum or Nesterov for float16 variables."
                )
        super().build(var_list)
        if self.skip_nonfinite:
            self._nonfinite_steps = self.add_variable(
                shape=(), dtype="int", name="nonfinite_steps", aggregation="only_first_replica"
            )
        self._state = {
            name: [self.add_variable_from_reference(v, name, initializer=self._initializer(name)) for v in var_list]
            for name in self._slot_names
        }

    def _initializer(self, slot_name):
        """The initializer of a slot; zeros unless a subclass says otherwise."""
        return "zeros"

    def _slot(self, name, variable):
        return self._state[name][compat.variable_index(self, variable)]

    # -- fused kernels ---------------------------------------------------------
    def _fused_spec(self):
        """(kind, hyperparameters) of the backend kernel that computes this
        update, or None where only the keras.ops code does (the default).
        Kinds: "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam";
        second-order: "hybrid", "adahessian", "sophia"; Kronecker: "soap",
        "shampoo"."""
        return None

    def _decay_in_kernel(self):
        """Whether the backend's fused kernel applies the decoupled weight
        decay itself (torch's fused AdamW), saving a pass over the weights."""
        spec = self._fused_spec() if self.fused and self.weight_decay is not None else None
        return spec is not None and spec[0] in backend.DECAY_IN_KERNEL

    def _apply_weight_decay(self, variables):
        if not self._decay_in_kernel():
            super()._apply_weight_decay(variables)

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        # All variables at once (torch). Elsewhere this defers to Keras's own
        # step, which on TensorFlow keeps the tf.distribute cross-replica
        # gradient sum and per-replica variable update.
        spec = self._fused_spec() if self.fused else None
        if spec is not None and backend.fused_update(self, spec, grads, trainable_variables, learning_rate):
            return
        if self._decay_in_kernel():  # the kernel declined (mixed dtypes): decay here
            super()._apply_weight_decay(trainable_variables)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def _fused_update_one(self, gradient, variable, learning_rate):
        """One variable through a backend kernel (TensorFlow); True if done."""
        spec = self._fused_spec() if self.fused else None
        return spec is not None and backend.fused_update_one(self, spec, gradient, variable, learning_rate)

    # -- shared arithmetic ----------------------------------------------------
    def _ema(self, average, value, decay):
        """average <- decay * average + (1 - decay) * value, in place."""
        self.assign_add(average, ops.multiply(ops.subtract(value, average), 1.0 - decay))

    def _bias_correction(self, decay, dtype):
        """1 - decay^t at the current step t (1-based)."""
        step = ops.cast(self.iterations + 1, dtype)
        return 1.0 - ops.power(ops.cast(decay, dtype), step)

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self._hyperparameters})
        config["fused"] = self.fused
        config["skip_nonfinite"] = self.skip_nonfinite
        return config


def _path(variable):
    return getattr(variable, "path", None) or getattr(variable, "name", "?")


def _all_finite(grads):
    return ops.all(ops.stack([ops.all(ops.isfinite(g)) for g in grads if g is not None]))


def _check_gradients(grads, variables):
    """Clear errors for gradients that cannot belong to `variables` (Keras
    would broadcast a wrong shape silently or fail deep inside an op)."""
    if len(grads) != len(variables):
        raise ValueError(
            f"Received {len(variables)} variables and {len(grads)} gradients; `grads` must match "
            "`trainable_variables` one to one."
        )
    for i, (g, v) in enumerate(zip(grads, variables)):
        if g is None:
            continue
        dtype = keras.backend.standardize_dtype(g.dtype)
        if "float" not in dtype:
            raise TypeError(
                f"Gradient {i} (for variable '{_path(v)}') has dtype {dtype}; gradients must be floating point."
            )
        g_shape, v_shape = tuple(g.shape), tuple(v.shape)
        known = len(g_shape) == len(v_shape) and all(a is None or b is None or a == b for a, b in zip(g_shape, v_shape))
        if not known:
            raise ValueError(
                f"Gradient {i} has shape {g_shape} but variable '{_path(v)}' has shape {v_shape}; "
                "each gradient must have its variable's shape."
            )
