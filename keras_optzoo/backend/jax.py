"""JAX: Hessian-vector products as jvp of grad over `stateless_call`."""

import jax
import jax.numpy as jnp

import keras

from keras_optzoo.curvature import _steps


def loss_and_hvp(model, loss_fn, x, y):
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss_of(t):
        y_pred, _, losses = model.stateless_call(t, non_trainable, x, training=False, return_losses=True)
        loss = _steps.check_scalar(loss_fn(y, y_pred))
        return loss + sum((jnp.asarray(l, loss.dtype) for l in losses), jnp.zeros((), loss.dtype))

    loss, grads = jax.jit(jax.value_and_grad(loss_of))(trainable)
    grad_fn = jax.grad(loss_of)
    # One compilation per (model, batch); every product after that is one XLA call.
    jitted = jax.jit(lambda t, vectors: jax.jvp(grad_fn, (t,), (vectors,))[1])

    def hvp(vectors):
        return jitted(trainable, [jnp.asarray(v, t.dtype) for v, t in zip(vectors, trainable)])

    return loss, grads, hvp


def rademacher(variables, seed, step):
    key = jax.random.fold_in(jax.random.key(seed), jnp.asarray(step, jnp.uint32))
    keys = jax.random.split(key, len(variables))
    return [jax.random.rademacher(k, tuple(v.shape), dtype=v.dtype) for k, v in zip(keys, variables)]


def train_step(model, state, data):
    outer, opt = _steps.optimizers_of(model)  # built by Keras's JAX trainer before the first step
    trainable, non_trainable, opt_values, metrics_values = state
    x, y, sample_weight = _steps.unpack(data)

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
    step = opt_values[index[id(opt._iterations)]]
    # grads are of the (possibly) scaled loss, the HVP of the unscaled one.
    def scale():
        with keras.StatelessScope(state_mapping=list(zip(outer.variables, opt_values))):
            return outer.scale_loss(jnp.ones((), grads[0].dtype))

    new = _steps.refreshed_curvature(
        opt, hvp, _steps.unscaled(outer, grads, scale), model.trainable_variables, step,
        [opt_values[i] for i in slot_positions],
    )
    opt_values = list(opt_values)
    for position, value in zip(slot_positions, new):
        opt_values[position] = value
    opt.curvature_supplied = True
    trainable, opt_values = outer.stateless_apply(opt_values, grads, trainable)
    logs, new_metrics = model._update_metrics_variables(
        new_metrics, unscaled_loss, x, y, y_pred, sample_weight
    )
    return logs, (trainable, new_non_trainable, opt_values, new_metrics)


# -- fused update kernels ------------------------------------------------------
# XLA already fuses each variable's keras.ops update into one loop, so JAX has
# no separate fused path (measured: docs/performance.md).
# Kinds whose kernel also applies the decoupled weight decay: none here.
DECAY_IN_KERNEL = set()


def fused_update(optimizer, spec, grads, variables, learning_rate):
    return False


def fused_update_one(optimizer, spec, gradient, variable, learning_rate):
    return False


def cond_effects(pred, true_fn, false_fn):
    """Runs one of two side-effecting branches. JAX variables change only
    eagerly, so `pred` must be concrete; inside jit, Keras trains through
    `stateless_apply`, which selects with `lax.cond` instead."""
    if isinstance(pred, jax.core.Tracer):
        raise RuntimeError(
            "skip_nonfinite: `optimizer.apply` was called inside a traced JAX function; use "
            "`optimizer.stateless_apply` there (as model.fit does) or call `apply` eagerly."
        )
    (true_fn if bool(pred) else false_fn)()
