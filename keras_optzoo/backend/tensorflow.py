"""TensorFlow: Hessian-vector products with nested GradientTapes."""

import tensorflow as tf

import keras

from keras_optzoo.curvature import _steps


def _dot(xs, ys):
    return tf.add_n([tf.reduce_sum(x * tf.cast(y, x.dtype)) for x, y in zip(xs, ys)])


def _nested_hvp(loss_of, variables):
    def hvp(vectors):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_of()
            grads = inner.gradient(loss, variables)
            dot = _dot(grads, vectors)
        return outer.gradient(dot, variables)

    return hvp


def loss_and_hvp(model, loss_fn, x, y):
    variables = model.trainable_variables

    def loss_of():
        loss = loss_fn(y, model(x, training=False))
        return _steps.check_scalar(loss) + tf.add_n([tf.zeros(())] + [tf.cast(l, loss.dtype) for l in model.losses])

    with tf.GradientTape() as tape:
        loss = loss_of()
    grads = tape.gradient(loss, variables)
    return loss, grads, _nested_hvp(loss_of, variables)


def rademacher(variables, seed, step):
    step = tf.cast(step, tf.int32)
    out = []
    for i, v in enumerate(variables):
        bits = tf.random.stateless_uniform(
            tuple(v.shape), seed=tf.stack([tf.constant(seed + 104729 * i, tf.int32), step]),
            minval=0, maxval=2, dtype=tf.int32,
        )
        out.append(tf.cast(2 * bits - 1, v.dtype))
    return out


def train_step(model, data):
    opt = model.optimizer
    x, y, sample_weight = _steps.unpack(data)

    def loss_of():
        y_pred = model(x, training=True)
        return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True), y_pred

    with tf.GradientTape() as tape:
        loss, y_pred = loss_of()
        model._loss_tracker.update_state(loss, sample_weight=tf.shape(next(i for i in keras.tree.flatten(x) if i is not None))[0])
        scaled = opt.scale_loss(loss)
    variables = model.trainable_weights  # after the forward pass, which builds a subclassed model
    if not opt.built:
        opt.build(variables)
    grads = tape.gradient(scaled, variables)
    slots = opt.curvature_slots()
    new = _steps.refreshed_curvature(
        opt, _nested_hvp(lambda: loss_of()[0], variables), grads, variables, opt.iterations, [s.value for s in slots]
    )
    for slot, value in zip(slots, new):
        slot.assign(value)
    opt.curvature_supplied = True
    opt.apply_gradients(zip(grads, variables))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
