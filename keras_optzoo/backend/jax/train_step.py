"""JAX: the stateless train step of `with_curvature` models."""

import jax
import jax.numpy as jnp

import keras

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend import _common


# `fit` runs this step traced (compiled), so no Python-side step count is kept.
HOST_STEPS = False

def train_step(model, state, data, curvature):
    """Keras's JAX train step plus, before the update, `curvature(...)`
    written into the optimizer's curvature slots (refresh-gated with
    `lax.cond` inside `curvature`, so one compiled step serves every step)."""
    outer, opt = _common.optimizers_of(model)  # built by Keras's JAX trainer before the first step
    trainable, non_trainable, opt_values, metrics_values = state
    x, y, sample_weight = _common.unpack(data)

    def loss_and_aux(t):
        return model.compute_loss_and_updates(
            t, non_trainable, metrics_values, x, y, sample_weight, training=True, optimizer_variables=opt_values
        )

    (loss, aux), grads = jax.value_and_grad(loss_and_aux, has_aux=True)(trainable)
    unscaled_loss, y_pred, new_non_trainable, new_metrics = aux
    grad_fn = jax.grad(lambda t: loss_and_aux(t)[1][0])

    def hvp(vectors):
        return jax.jvp(grad_fn, (trainable,), (list(vectors),))[1]

    index = {id(v): i for i, v in enumerate(outer.variables)}
    slot_positions = [index[id(s)] for s in opt.curvature_slots()]
    step = opt_values[index[id(opt.iterations)]]

    # grads are of the (possibly) scaled loss, the HVP of the unscaled one.
    def scale():
        with keras.StatelessScope(state_mapping=list(zip(outer.variables, opt_values))):
            return outer.scale_loss(jnp.ones((), grads[0].dtype))

    new = curvature(
        hvp, _common.unscaled(outer, grads, scale), model.trainable_variables, step,
        [opt_values[i] for i in slot_positions],
    )
    opt_values = list(opt_values)
    for position, value in zip(slot_positions, new):
        opt_values[position] = value
    trainable, opt_values = outer.stateless_apply(opt_values, grads, trainable)
    logs, new_metrics = compat.update_metrics_stateless(model, new_metrics, unscaled_loss, x, y, y_pred, sample_weight)
    return logs, (trainable, new_non_trainable, opt_values, new_metrics)
