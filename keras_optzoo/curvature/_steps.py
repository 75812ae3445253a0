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


def unscaled(outer, grads, scale_of):
    """`grads` of the scaled loss divided by the loss scale, for the curvature
    estimators; no work at all when nothing scales the loss."""
    if outer.loss_scale_factor is None and not hasattr(outer, "inner_optimizer"):
        return list(grads)
    scale = scale_of()
    return [g / ops.cast(scale, g.dtype) for g in grads]


def refreshed_curvature(optimizer, hvp, grads, variables, step, previous, replica_sum=None):
    """The optimizer's curvature input for this step: recomputed when
    `step % hessian_update_interval == 0`, else the previous one (ops.cond, so
    the HVPs only run on refresh steps, also under XLA). Entries that come
    out non-finite (an overflow under float16 compute) keep their previous
    value, so one bad estimate cannot poison the running averages.

    `replica_sum` (TensorFlow under tf.distribute) sums tensors over the
    replicas, each of which sees its share of the batch. A diagonal estimate
    is linear in the Hessian, so each replica estimates on its share and one
    sum follows, outside the cond (collectives cannot run inside one); the
    Newton-CG direction is not, so there every HVP and the gradient are summed.
    """
    interval = optimizer.hessian_update_interval
    probes = lambda: probes_for(optimizer, variables, step)  # noqa: E731

    def refreshing():
        return ops.equal(ops.mod(ops.cast(step, "int32"), interval), 0)

    def keep_finite(new):
        return [ops.where(ops.isfinite(n), n, ops.cast(p, n.dtype)) for n, p in zip(new, previous)]

    if replica_sum is not None and optimizer.curvature_kind != "diagonal":
        summed_hvp = lambda vectors: replica_sum(hvp(vectors))  # noqa: E731
        return keep_finite(curvature_for(optimizer, summed_hvp, replica_sum(grads), probes()))
    if replica_sum is not None:
        if interval == 1:
            return keep_finite(replica_sum(curvature_for(optimizer, hvp, grads, probes())))
        refresh = refreshing()
        local = ops.cond(
            refresh,
            lambda: curvature_for(optimizer, hvp, grads, probes()),
            lambda: [ops.zeros_like(p) for p in previous],
        )
        summed = replica_sum(local)
        return keep_finite([ops.where(refresh, s, ops.cast(p, s.dtype)) for s, p in zip(summed, previous)])

    def compute():
        return keep_finite(curvature_for(optimizer, hvp, grads, probes()))

    if interval == 1:
        return compute()
    return ops.cond(refreshing(), compute, lambda: list(previous))


def unpack(data):
    import keras

    return keras.utils.unpack_x_y_sample_weight(data)


def batch_size(x):
    import keras

    return next(i for i in keras.tree.flatten(x) if i is not None).shape[0]
