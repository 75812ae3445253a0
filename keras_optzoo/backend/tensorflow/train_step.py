"""TensorFlow: the train step of `with_curvature` models."""

import tensorflow as tf

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend import _common
from keras_optzoo.backend.tensorflow.hvp import nested_hvp


def _replica_sum(tensors):
    context = tf.distribute.get_replica_context()
    return list(context.all_reduce(tf.distribute.ReduceOp.SUM, list(tensors)))


# `fit` runs this step traced (compiled), so no Python-side step count is kept.
HOST_STEPS = False

def train_step(model, data, curvature):
    """Keras's train step plus, before the update, `curvature(...)` written
    into the optimizer's curvature slots (refresh-gated inside `curvature`)."""
    outer, opt = _common.optimizers_of(model)
    x, y, sample_weight = _common.unpack(data)

    def loss_of():
        y_pred = model(x, training=True)
        return compat.compute_loss(model, x, y, y_pred, sample_weight), y_pred

    with tf.GradientTape() as tape:
        loss, y_pred = loss_of()
        compat.track_loss(model, loss, x)
        scaled = outer.scale_loss(loss)
    variables = model.trainable_weights  # after the forward pass, which builds a subclassed model
    if not outer.built:
        outer.build(variables)
    grads = tape.gradient(scaled, variables)
    slots = opt.curvature_slots()
    # The curvature comes from the unscaled loss (the HVP of the loss itself).
    curvature_grads = _common.unscaled(outer, grads, lambda: outer.scale_loss(tf.ones((), grads[0].dtype)))
    # Under tf.distribute each replica sees its share of the batch, and Keras
    # scales each replica's loss by 1 / replicas: the global HVP (and
    # gradient) is the sum over replicas, which keeps the Hutchinson
    # estimates and the CG solve equal to single-device training.
    context = tf.distribute.get_replica_context()
    distributed = context is not None and context.num_replicas_in_sync > 1
    new = curvature(
        nested_hvp(lambda: loss_of()[0], variables), curvature_grads, variables,
        opt.iterations, [s.value for s in slots], replica_sum=_replica_sum if distributed else None,
    )
    for slot, value in zip(slots, new):
        slot.assign(value)
    outer.apply_gradients(zip(grads, variables))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
