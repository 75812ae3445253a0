"""JAX: the stateless train step of `with_curvature` models."""

import contextlib

import jax
import jax.numpy as jnp

import keras

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend import _common
from keras_optzoo.backend.jax.hvp import Oracle


# `fit` runs this step traced (compiled), so no Python-side step count is kept.
HOST_STEPS = False


def make_train_function(model, curvature):
    """`fit`'s train function when the curvature is refreshed every k > 1
    steps (also Newton's diagonal; None otherwise: Keras's own, one program). Two programs, each
    compiled once: the refresh step and the plain one, chosen per step on
    the host from a step count kept here. Why not one program with the
    choice inside `lax.cond`: XLA:CPU compiles the convolutions that a
    kernel's gradient needs into fast kernels only outside a conditional
    (JAX 0.10: a Conv2D kernel gradient 52 ms at top level, 4.6 s inside a
    `lax.cond` branch), so with a conv net every step paid for the branch.

    The count is `iterations`, read from the train state (a device read)
    only when the state was not the one the last step returned (a new
    `fit`, `train_on_batch`, a callback's sync) or when a step may leave
    `iterations` unchanged (`skip_nonfinite`, a loss scale); the refresh
    program still checks `is_refresh` on the device."""
    if model.run_eagerly or not model.jit_compile or curvature.request.interval == 1:
        return None
    outer, optimizer = _common.optimizers_of(model)
    position = [id(v) for v in outer.variables].index(id(optimizer.iterations))
    may_skip = optimizer.skip_nonfinite or _common.scales_loss(outer)
    out_shardings = None
    if keras.distribution.distribution() is not None:
        out_shardings = (None, compat.jax_state_shardings(model))
    programs = {
        refresh: jax.jit(lambda state, data, refresh=refresh: model.train_step(state, data, refresh=refresh),
                         donate_argnums=0, out_shardings=out_shardings)
        for refresh in (True, False)
    }  # fmt: skip
    count = {"step": None, "last": None}  # the host-side count, and the `iterations` array it belongs to

    def step(state, data):
        iterations = state[2][position]
        if count["step"] is None or iterations is not count["last"]:
            count["step"] = int(iterations)
        logs, state = programs[optimizer.is_refresh(count["step"])](state, data)
        count["last"] = state[2][position]
        count["step"] = None if may_skip else count["step"] + 1
        return logs, state

    return compat.jax_step_function(model, step)


def train_step(model, state, data, curvature, refresh=None):
    """Keras's JAX train step plus, before the update, the curvature written
    into the optimizer's curvature slots. `refresh` True: the refresh step
    (gradient and curvature from one linearization, see `Oracle`; the slots
    keep their values if `is_refresh` says otherwise on the device); False:
    a plain gradient; None: one program for every step, with `lax.cond`
    choosing (or always refreshing when the curvature is needed each step).
    `make_train_function` runs the first two; Newton (diagonal, interval
    k > 1), whose direction is computed every step, is told by `refresh`
    whether to estimate D, so it needs no cond either."""
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
        new = curvature.compute(oracle, step, previous, refresh=refresh)
        return oracle.scaled_grads, oracle.aux, [jnp.asarray(n, p.dtype) for n, p in zip(new, previous)]

    def plain():
        grads, aux = jax.grad(loss_and_aux, has_aux=True)(trainable)
        return grads, aux, list(previous)

    if curvature.always or refresh:  # `compute` confirms a host-chosen refresh on the device
        grads, aux, new = refreshed()
    elif refresh is None:
        grads, aux, new = jax.lax.cond(opt.is_refresh(step), refreshed, plain)
    else:  # the update leaves the curvature averages out (`no_refresh`)
        grads, aux, new = plain()
    unscaled_loss, y_pred, new_non_trainable, new_metrics = aux
    opt_values = list(opt_values)
    for position, value in zip(slot_positions, new):
        opt_values[position] = value
    with opt.no_refresh() if refresh is False else contextlib.nullcontext():
        trainable, opt_values = outer.stateless_apply(opt_values, grads, trainable)
    logs, new_metrics = compat.update_metrics_stateless(model, new_metrics, unscaled_loss, x, y, y_pred, sample_weight)
    return logs, (trainable, new_non_trainable, opt_values, new_metrics)
