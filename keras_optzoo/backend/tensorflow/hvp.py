"""TensorFlow: Hessian-vector products with nested GradientTapes."""

import tensorflow as tf

from keras_optzoo.backend._common import check_scalar, dot


def nested_hvp(loss_of, variables):
    """H @ vectors for the scalar `loss_of()` (recomputed under two tapes)."""

    def hvp(vectors):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_of()
            grads = inner.gradient(loss, variables)
            product = dot(grads, vectors)
        return outer.gradient(product, variables)

    return hvp


class HessianProgram:
    """The loss of `model` under `loss_fn`, its gradient and HVPs, as
    `tf.function`s traced once per batch shape and reused for every
    evaluation (the weights are read from the variables at each call)."""

    def __init__(self, model, loss_fn):
        self.model = model
        variables = model.trainable_variables

        def loss_at(x, y):
            loss = check_scalar(loss_fn(y, model(x, training=False)))
            return loss + tf.add_n([tf.zeros((), loss.dtype)] + [tf.cast(l, loss.dtype) for l in model.losses])

        def value_and_grad(x, y):
            with tf.GradientTape() as tape:
                loss = loss_at(x, y)
            return loss, tape.gradient(loss, variables)

        def hvp(x, y, vectors):
            return nested_hvp(lambda: loss_at(x, y), variables)(vectors)

        self._value_and_grad = tf.function(value_and_grad)
        self._hvp = tf.function(hvp)

    def evaluate(self, x, y):
        """(loss, grads, hvp) at the model's current weights and (x, y)."""
        x, y = tf.convert_to_tensor(x), tf.convert_to_tensor(y)
        loss, grads = self._value_and_grad(x, y)
        dtypes = [v.dtype for v in self.model.trainable_variables]

        def hvp(vectors):
            return self._hvp(x, y, [tf.cast(v, d) for v, d in zip(vectors, dtypes)])

        return loss, grads, hvp


def rademacher(variables, seed, step):
    """+-1 probes shaped like `variables`, a function of (seed, step)."""
    step = tf.cast(step, tf.int32)
    out = []
    for i, v in enumerate(variables):
        bits = tf.random.stateless_uniform(
            tuple(v.shape), seed=tf.stack([tf.constant(seed + 104729 * i, tf.int32), step]),
            minval=0, maxval=2, dtype=tf.int32,
        )
        out.append(tf.cast(2 * bits - 1, v.dtype))
    return out
