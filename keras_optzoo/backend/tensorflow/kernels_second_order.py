"""TensorFlow: update kernels of the second-order optimizers (Hybrid,
AdaHessian, SophiaH/SophiaG), called by the kernels in `kernels.KERNELS`.

TensorFlow has no training op for these updates, and `fit` runs without XLA
by default, so the keras.ops code is ~15 separate kernels per variable, each
a pass over the weights (on the MLP 784-500-10 a step that does not refresh
cost 1.8x Adam's). Each kernel here is one `tf.function(jit_compile=True)`
per variable: XLA fuses the whole update into one loop that reads the
weights, the gradient, the curvature and the slots once and writes the
weights and slots once. Variables go in as resource handles (as the
`ResourceApply*` ops take them), so the same kernel serves a plain variable
and a tf.distribute replica's copy. The refresh flag, the step and the
learning rate are tensors, so one compiled program serves every step, and
a second one the steps known not to refresh (`fit`'s non-refresh branch):
that one leaves the curvature and its average alone (MLP, one A/B process,
interval 10: Hybrid 1.22 -> 1.16x Adam, SophiaH 1.11 -> 1.04x).
Also here: the unpacking of the Hutchinson probes' random bits, one XLA
program per probe shape.
"""

import tensorflow as tf

from keras_optzoo.backend._common import signs

raw = tf.raw_ops


def _read(handle, dtype):
    return raw.ReadVariableOp(resource=handle, dtype=dtype)


def _write(handle, value):
    raw.AssignVariableOp(resource=handle, value=value)


def _ema(handle, value, weight):
    """average += (value - average) * weight, as `OptzooOptimizer._ema` with
    weight = 1 - decay; returns the new average."""
    average = _read(handle, value.dtype)
    average = average + (value - average) * weight
    _write(handle, average)
    return average


def _ema_on_refresh(handle, value, refresh, decay, dtype):
    """`_ema` with the weight `refresh * (1 - decay)`; with refresh None (a
    step known not to refresh, see `SecondOrderOptimizer.no_refresh`) the
    average is only read, and `value()` (the curvature read) never runs."""
    if refresh is None:
        return _read(handle, dtype)
    return _ema(handle, value(), refresh * (1.0 - decay))


def _correction(beta, count):
    """1 / (1 - beta^count): the arrays are multiplied by it (an array
    division costs several multiplications on a CPU)."""
    return 1.0 / (1.0 - tf.pow(tf.constant(beta, count.dtype), count))


# The hyperparameters come in as Python floats (constants in the program);
# t, r, the refresh flag (1.0 or 0.0) and lr are tensors. refresh None: the
# program of a step known not to refresh, which neither reads the curvature
# nor writes the curvature average (one pass over each fewer).
@tf.function(jit_compile=True, autograph=False)
def hybrid(var, grad, curvature, m, v, h, lr, t, r, refresh, b1, b2, b3, eps, l2):
    dtype = grad.dtype
    theta = _read(var, dtype)
    g = grad + theta * l2 if l2 else grad
    m = _ema(m, g, 1.0 - b1)
    v = _ema(v, tf.square(g), 1.0 - b2)

    def magnitude():
        d = _read(curvature, dtype)
        return tf.abs(d + l2 if l2 else d)

    h = _ema_on_refresh(h, magnitude, refresh, b3, dtype)
    denom = tf.maximum(tf.sqrt(v * _correction(b2, t)), h * _correction(b3, r)) + eps
    _write(var, theta - m * (lr * _correction(b1, t)) / denom)


@tf.function(jit_compile=True, autograph=False)
def adahessian(var, grad, curvature, m, v, lr, t, r, refresh, b1, b2, eps, power):
    dtype = grad.dtype

    def squared():
        d = tf.abs(_read(curvature, dtype))
        rank = d.shape.rank
        if rank > 2:  # a conv kernel: |D| averaged over its spatial axes (Keras layout)
            d = tf.broadcast_to(tf.reduce_mean(d, axis=list(range(rank - 2)), keepdims=True), tf.shape(d))
        return tf.square(d)

    m = _ema(m, grad, 1.0 - b1)
    v = _ema_on_refresh(v, squared, refresh, b2, dtype)
    root = tf.sqrt(v * _correction(b2, r))
    # XLA does not fold pow(x, 1.0): at the default power the pass over
    # exp/log cost AdaHessian's step 0.2 ms of 1.2 on the MLP.
    denom = (root if power == 1.0 else tf.pow(root, power)) + eps
    _write(var, _read(var, dtype) - m * (lr * _correction(b1, t)) / denom)


@tf.function(jit_compile=True, autograph=False)
def sophia(var, grad, curvature, m, h, lr, refresh, b1, b2, gamma, eps):
    dtype = grad.dtype
    m = _ema(m, grad, 1.0 - b1)
    h = _ema_on_refresh(h, lambda: _read(curvature, dtype), refresh, b2, dtype)
    ratio = m / tf.maximum(h * gamma, eps)
    _write(var, _read(var, dtype) - tf.clip_by_value(ratio, -1.0, 1.0) * lr)


@tf.function(jit_compile=True, autograph=False)
def probe_signs(words, shape, dtype):
    """`_common.signs` as one XLA loop. Without XLA its shift, mask, cast and
    affine steps are separate kernels, each a pass over the probe: the MLP's
    four probes in a tf.function 0.86 -> 0.49 ms with the words drawn
    outside (an XLA draw of the words themselves took 3.5 ms)."""
    return signs(words, shape, dtype)
