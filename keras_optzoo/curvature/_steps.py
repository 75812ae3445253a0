"""Backend-agnostic pieces of the `with_curvature` train steps."""

from keras import ops

from keras_optzoo import backend
from keras_optzoo.curvature.estimators import curvature_for


def check_scalar(loss):
    if len(ops.shape(loss)) != 0:
        raise ValueError(
            f"`loss_fn` must return a scalar (a reduced loss); it returned shape {tuple(ops.shape(loss))}. "
            "Use a Keras loss with a reduction such as 'sum_over_batch_size'."
        )
    return loss


def probes_for(optimizer, variables, step):
    if optimizer.curvature_kind != "diagonal":
        return []
    return [backend.rademacher(variables, optimizer.seed + 7919 * j, step) for j in range(optimizer.num_probes)]


def optimizers_of(model):
    """(outer, inner): `outer` scales the loss and applies the gradients (a
    keras.optimizers.LossScaleOptimizer under mixed_float16, else the
    optimizer itself); `inner` is the second-order optimizer holding the
    curvature."""
    outer = model.optimizer
    return outer, getattr(outer, "inner_optimizer", outer)


def refreshed_curvature(optimizer, hvp, grads, variables, step, previous):
    """The optimizer's curvature input for this step: recomputed when
    `step % hessian_update_interval == 0`, else the previous one (ops.cond, so
    the HVPs only run on refresh steps, also under XLA). Entries that come
    out non-finite (an overflow under float16 compute) keep their previous
    value, so one bad estimate cannot poison the running averages."""
    interval = optimizer.hessian_update_interval

    def compute():
        new = curvature_for(optimizer, hvp, grads, probes_for(optimizer, variables, step))
        return [ops.where(ops.isfinite(n), n, ops.cast(p, n.dtype)) for n, p in zip(new, previous)]

    if interval == 1:
        return compute()
    refresh = ops.equal(ops.mod(ops.cast(step, "int32"), interval), 0)
    return ops.cond(refresh, compute, lambda: list(previous))


def unpack(data):
    import keras

    return keras.utils.unpack_x_y_sample_weight(data)


def batch_size(x):
    import keras

    return next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
