"""TensorFlow: update kernels.

TensorFlow's ResourceApply* training ops update a variable and its slots in
one multi-threaded kernel (and lower to XLA under jit_compile). They run per
variable from `update_step`, which Keras calls inside its tf.distribute
update, so the cross-replica gradient sum and the per-replica variable update
stay Keras's own. Each kernel below is `kernel(optimizer, hp, gradient,
variable, lr)`, found by kind in `KERNELS`; kinds without one (RMSprop:
epsilon sits outside the root; AMSGrad: its kernel has no XLA lowering) run
the keras.ops code, which XLA or Grappler fuse.
"""

import tensorflow as tf

import keras

from keras_optzoo.backend.tensorflow import kernels_second_order as second_order

# Kinds whose kernel also applies the decoupled weight decay: none here.
DECAY_IN_KERNEL = frozenset()
# Whether the kernels take all variables at once (torch) or one (TensorFlow).
ALL_AT_ONCE = False

raw = tf.raw_ops


def _handle(variable):
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


def _slot(optimizer, name, variable):
    return _handle(optimizer._slot(name, variable))


def _sgd(optimizer, hp, g, variable, lr):
    raw.ResourceApplyGradientDescent(var=_handle(variable), alpha=lr, delta=g)


def _momentum(optimizer, hp, g, variable, lr, nesterov=False):
    # accum <- mu accum + lr g; theta <- theta - accum (Nesterov: - lr g - mu accum).
    one, mu = tf.constant(1.0, g.dtype), tf.constant(hp["momentum"], g.dtype)
    accum = _slot(optimizer, "velocity", variable)
    raw.ResourceApplyMomentum(
        var=_handle(variable), accum=accum, lr=one, grad=g * lr, momentum=mu, use_nesterov=nesterov
    )


def _nesterov(optimizer, hp, g, variable, lr):
    _momentum(optimizer, hp, g, variable, lr, nesterov=True)


def _adagrad(optimizer, hp, g, variable, lr):
    accum = _slot(optimizer, "accumulator", variable)
    eps = tf.constant(hp["epsilon"], g.dtype)
    raw.ResourceApplyAdagradV2(var=_handle(variable), accum=accum, lr=lr, epsilon=eps, grad=g)


def _adam(optimizer, hp, g, variable, lr):
    if hp["amsgrad"]:
        return False  # ResourceApplyAdamWithAmsgrad has no XLA kernel
    # The kernel adds epsilon to sqrt(v) before the bias correction; eps *
    # sqrt(1 - beta_2^t) there is eps after it, as in our Adam.
    dtype = g.dtype
    step = tf.cast(optimizer.iterations + 1, dtype)
    beta_1, beta_2 = tf.constant(hp["beta_1"], dtype), tf.constant(hp["beta_2"], dtype)
    beta_1_power, beta_2_power = tf.pow(beta_1, step), tf.pow(beta_2, step)
    raw.ResourceApplyAdam(
        var=_handle(variable), m=_slot(optimizer, "momentum", variable), v=_slot(optimizer, "velocity", variable),
        beta1_power=beta_1_power, beta2_power=beta_2_power, lr=lr, beta1=beta_1, beta2=beta_2,
        epsilon=hp["epsilon"] * tf.sqrt(1.0 - beta_2_power), grad=g,
    )  # fmt: skip


# -- second-order optimizers (kernels_second_order: one XLA program each) -------
def _schedule(optimizer, dtype):
    """(t, r, refresh) as tensors: the 1-based step, the number of refreshes
    so far, and 1.0 on a refresh step (0.0 otherwise); refresh None where the
    step is known not to refresh (the programs then skip the averages)."""
    step = tf.cast(optimizer.iterations, tf.int32)
    refresh = None if optimizer.known_not_to_refresh else tf.cast(optimizer.is_refresh(step), dtype)
    return tf.cast(step + 1, dtype), optimizer._refresh_count(dtype), refresh


def _second_order(program, names, schedule, slots):
    """A kernel running `program` on the variable, gradient, curvature and
    `slots`, the learning rate, the parts of (t, r, refresh) that `schedule`
    picks, and the hyperparameters `names` as Python floats."""

    def kernel(optimizer, hp, g, variable, lr):
        dtype = g.dtype
        t, r, refresh = _schedule(optimizer, dtype)
        picked = {"t": t, "r": r, "refresh": refresh}
        program(
            _handle(variable), g, _handle(optimizer._curvature_of(variable)),
            *(_slot(optimizer, n, variable) for n in slots), lr, *(picked[s] for s in schedule),
            *(float(hp[n]) for n in names),
        )  # fmt: skip

    return kernel


KERNELS = {
    "sgd": _sgd, "momentum": _momentum, "nesterov": _nesterov, "adagrad": _adagrad, "adam": _adam,
    "hybrid": _second_order(second_order.hybrid, ("beta_1", "beta_2", "beta_3", "epsilon", "l2"),
                            ("t", "r", "refresh"), ("momentum", "velocity", "hessian")),
    "adahessian": _second_order(second_order.adahessian, ("beta_1", "beta_2", "epsilon", "hessian_power"),
                                ("t", "r", "refresh"), ("momentum", "velocity")),
    "sophia": _second_order(second_order.sophia, ("beta_1", "beta_2", "gamma", "epsilon"), ("refresh",),
                            ("momentum", "hessian")),
}  # fmt: skip


def run_one(kernel, optimizer, hp, gradient, variable, learning_rate):
    """One variable through `kernel`; False where it does not apply (sparse
    gradients, non-float variables, a kernel that declines)."""
    if isinstance(gradient, tf.IndexedSlices) or not tf.as_dtype(variable.dtype).is_floating:
        return False
    dtype = variable.dtype
    done = kernel(optimizer, hp, tf.cast(gradient, dtype), variable, tf.cast(learning_rate, dtype))
    return done is not False


def cond_effects(pred, true_fn, false_fn):
    """Runs one of two side-effecting branches (tf.cond in graphs)."""

    def run(fn):
        def branch():
            fn()

        return branch

    keras.ops.cond(pred, run(true_fn), run(false_fn))
