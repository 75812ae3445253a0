"""TensorFlow: Hessian-vector products with nested GradientTapes."""

import tensorflow as tf

from keras_optzoo.backend._common import check_scalar, dot, stateless_loss, words_for
from keras_optzoo.backend.tensorflow.hvp_moments import exact_function
from keras_optzoo.backend.tensorflow.kernels_second_order import probe_signs


def dense(gradient):
    """`IndexedSlices` gradients (Embedding, `tf.gather`) as dense tensors; others (and None) unchanged."""
    return tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient


def output_grad(fn, y):
    """The gradient of the scalar `fn(y)` with respect to the tensor `y`."""
    y = tf.stop_gradient(y)
    with tf.GradientTape() as tape:
        tape.watch(y)
        value = fn(y)
    return tape.gradient(value, y)


def output_hvp(fn, y, v):
    """The Hessian of the scalar `fn(y)` with respect to `y`, times `v`."""
    y = tf.stop_gradient(y)
    with tf.GradientTape() as outer:
        outer.watch(y)
        with tf.GradientTape() as inner:
            inner.watch(y)
            value = fn(y)
        grad = inner.gradient(value, y)
    return outer.gradient(grad, y, output_gradients=tf.cast(v, grad.dtype))


class Oracle:
    """The derivatives of one train step's loss that a curvature estimate asks
    for, computed when first asked (inside the refresh branch of the step's
    `cond`, so nothing runs on other steps).

    The step's loss is evaluated again statelessly (`stateless_loss`) from the
    non-trainable state before the step's forward pass: the same dropout masks
    and batch statistics, no second update of moving statistics. One pass under
    a persistent tape serves every `hvp`, `vjp`, `jvp` of the refresh.
    """

    def __init__(self, model, data, non_trainable, grads, loss):
        self.grads, self.loss, self.targets = grads, loss, data[1:]
        self._model, self._data, self._non_trainable = model, data, non_trainable
        self._tape = None

    def reuse(self, tape, variables, grads, outputs):
        """Derivatives from the step's own pass instead (a step that always refreshes):
        `tape`, persistent, recorded the forward pass and the gradient `grads`."""
        self._tape, self._values, self._grads, self._outputs = tape, variables, grads, outputs

    def _record(self):
        if self._tape is None:
            self._values = [tf.convert_to_tensor(v.value) for v in self._model.trainable_variables]
            self._tape = tf.GradientTape(persistent=True)
            with self._tape:
                self._tape.watch(self._values)
                with tf.GradientTape() as inner:
                    inner.watch(self._values)
                    loss, self._outputs = stateless_loss(self._model, self._data, self._values, self._non_trainable)
                self._grads = [dense(g) for g in inner.gradient(loss, self._values)]
        return self._tape

    @property
    def outputs(self):
        self._record()
        return self._outputs

    def hvp(self, vectors):
        tape = self._record()
        vectors = [tf.cast(v, g.dtype) for v, g in zip(vectors, self._grads)]
        return [dense(h) for h in tape.gradient(self._grads, self._values, output_gradients=vectors)]

    def vjp(self, cotangent):
        tape = self._record()
        return [dense(g) for g in tape.gradient(self._outputs, self._values, output_gradients=cotangent)]

    def jvp(self, vectors):
        tape = self._record()
        zero = tf.zeros_like(self._outputs)
        with tf.GradientTape() as transpose:
            transpose.watch(zero)
            pulled = [dense(p) for p in tape.gradient(self._outputs, self._values, output_gradients=zero)]
        vectors = [tf.cast(v, p.dtype) for v, p in zip(vectors, pulled)]
        return transpose.gradient(pulled, zero, output_gradients=vectors)

    def loss_at(self, deltas):
        variables = self._model.trainable_variables
        values = [tf.convert_to_tensor(v.value) + tf.cast(d, v.dtype) for v, d in zip(variables, deltas)]
        return stateless_loss(self._model, self._data, values, self._non_trainable)[0]


class HessianProgram:
    """The loss of `model` under `loss_fn`, its gradient and HVPs, as `tf.function`s traced
    once per batch shape and reused (the weights are read from the variables at each call)."""

    def __init__(self, model, loss_fn):
        self.model = model
        variables = model.trainable_variables

        def loss_at(x, y):
            loss = check_scalar(loss_fn(y, model(x, training=False)))
            return loss + tf.add_n([tf.zeros((), loss.dtype)] + [tf.cast(l, loss.dtype) for l in model.losses])

        def value_and_grad(x, y):
            with tf.GradientTape() as tape:
                loss = loss_at(x, y)
            return loss, [dense(g) for g in tape.gradient(loss, variables)]

        def hvp(x, y, vectors):
            with tf.GradientTape() as outer:
                product = dot(value_and_grad(x, y)[1], vectors)
            return [dense(h) for h in outer.gradient(product, variables)]

        self._value_and_grad = exact_function(value_and_grad)
        self._hvp = exact_function(hvp)

    def evaluate(self, x, y, gradient=True):
        """(loss, grads, hvp) at the current weights and (x, y); loss and grads None without `gradient`."""
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        loss, grads = self._value_and_grad(x, y) if gradient else (None, None)
        dtypes = [v.dtype for v in self.model.trainable_variables]

        def hvp(vectors):
            return self._hvp(x, y, [tf.cast(v, d) for v, d in zip(vectors, dtypes)])

        return loss, grads, hvp


def uniform(like, seed, step):
    """Uniform [0, 1) float32 numbers shaped like the tensor `like`, a function of
    (seed, step), and of the replica under tf.distribute (each its own rows' draws)."""
    context = tf.distribute.get_replica_context()
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32) if context is not None else 0
    seed = tf.stack([tf.constant(seed, tf.int32) + 7919 * replica, tf.cast(step, tf.int32)])
    return tf.random.stateless_uniform(tf.shape(like), seed=seed)


def rademacher(variables, seed, step):
    """+-1 probes like `variables` from (seed, step); words of 32 random bits (minval, maxval None)."""
    step = tf.cast(step, tf.int32)
    keys = [tf.stack([tf.constant(seed + 104729 * i, tf.int32), step]) for i in range(len(variables))]
    words = [tf.random.stateless_uniform((words_for(v.shape),), k, minval=None, maxval=None, dtype=tf.int32)
             for v, k in zip(variables, keys)]  # fmt: skip
    return [probe_signs(w, tuple(v.shape), v.dtype) for w, v in zip(words, variables)]
