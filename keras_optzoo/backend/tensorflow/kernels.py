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


KERNELS = {"sgd": _sgd, "momentum": _momentum, "nesterov": _nesterov, "adagrad": _adagrad, "adam": _adam}


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
