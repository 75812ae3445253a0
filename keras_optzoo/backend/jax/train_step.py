"""JAX: the stateless train step of `with_curvature` models."""

import jax
import jax.numpy as jnp

import keras

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend import _common
from keras_optzoo.backend.jax.hvp import Oracle


# `fit` runs this step traced (compiled), so no Python-side step count is kept.
HOST_STEPS = False


def train_step(model, state, data, curvature):
    """Keras's JAX train step plus, before the update, the curvature written
    into the optimizer's curvature slots. One compiled step serves every
    step: `lax.cond` chooses between the refresh branch (gradient and
    curvature from one linearization, see `Oracle`) and a plain gradient."""
    outer, opt = _common.optimizers_of(model)  # built by Keras's JAX trainer before the first step
    trainable, non_trainable, opt_values, metrics_values = state
    x, y, sample_weight = _common.unpack(data)

    def loss_and_aux(t):
        return model.compute_loss_and_updates(
            t, non_trainable, metrics_values, x, y, sample_weight, training=True, optimizer_variables=opt_values
        )

    index = {id(v): i for i, v in enumerate(outer.variables)}
    slot_positions = [index[id(s)] for s in opt.curvature_slots()]
    step = opt_values[index[id(opt.iterations)]]
    previous = [opt_values[i] for i in slot_positions]

    # grads are of the (possibly) scaled loss, the curvature of the unscaled one.
    def scale():
        with keras.StatelessScope(state_mapping=list(zip(outer.variables, opt_values))):
            return outer.scale_loss(jnp.ones((), trainable[0].dtype))

    def refreshed():
        scaling = _common.scales_loss(outer)
        unscale = lambda g: _common.unscaled(outer, g, scale)  # noqa: E731
        oracle = Oracle(loss_and_aux, trainable, (y, sample_weight), curvature.needs, unscale, scaling)
        new = curvature.compute(oracle, step, previous)
        return oracle.scaled_grads, oracle.aux, [jnp.asarray(n, p.dtype) for n, p in zip(new, previous)]

    def plain():
        grads, aux = jax.grad(loss_and_aux, has_aux=True)(trainable)
        return grads, aux, list(previous)

    if curvature.always:
        grads, aux, new = refreshed()
    else:
        grads, aux, new = jax.lax.cond(opt.is_refresh(step), refreshed, plain)
    unscaled_loss, y_pred, new_non_trainable, new_metrics = aux
    opt_values = list(opt_values)
    for position, value in zip(slot_positions, new):
        opt_values[position] = value
    trainable, opt_values = outer.stateless_apply(opt_values, grads, trainable)
    logs, new_metrics = compat.update_metrics_stateless(model, new_metrics, unscaled_loss, x, y, y_pred, sample_weight)
    return logs, (trainable, new_non_trainable, opt_values, new_metrics)
