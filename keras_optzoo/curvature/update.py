"""What the `with_curvature` train step computes on a refresh step, from the
optimizer's `CurvatureRequest`, in `keras.ops` (it runs inside the jitted
train steps of every backend)."""

from keras import ops

from keras_optzoo import backend
from keras_optzoo.curvature.estimators import conjugate_gradient, hutchinson


def probes(request, variables, step):
    """The request's Rademacher probes at `step` (probe j from seed + 7919 j)."""
    return [backend.rademacher(variables, request.seed + 7919 * j, step) for j in range(request.num_probes)]


class CurvatureUpdate:
    """The curvature input of a second-order optimizer for one train step.

    `update(hvp, grads, variables, step, previous, replica_sum=None)` returns
    the new contents of `optimizer.curvature_slots()`: recomputed when
    `optimizer.is_refresh(step)` (under `ops.cond`, so the HVPs only run on
    refresh steps, also under XLA), else `previous`. `update.compute(...)`
    recomputes unconditionally, for a caller that decided the refresh itself
    (torch). Entries that come out non-finite (an overflow under float16
    compute) keep their previous value, so one bad estimate cannot poison
    the running averages.

    `replica_sum` (TensorFlow under tf.distribute) sums tensors over the
    replicas, each of which sees its share of the batch. A diagonal estimate
    is linear in the Hessian, so each replica estimates on its share and one
    sum follows, outside the cond (collectives cannot run inside one); the
    Newton-CG direction is not, so there every HVP and the gradient are summed.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.request = optimizer.curvature_request()

    def _estimate(self, hvp, grads, variables, step):
        request = self.request
        if request.kind == "diagonal":
            return hutchinson(hvp, probes(request, variables, step))
        return conjugate_gradient(hvp, grads, request.damping, request.cg_iterations)

    @staticmethod
    def _keep_finite(new, previous):
        return [ops.where(ops.isfinite(n), n, ops.cast(p, n.dtype)) for n, p in zip(new, previous)]

    def compute(self, hvp, grads, variables, step, previous):
        return self._keep_finite(self._estimate(hvp, grads, variables, step), previous)

    def __call__(self, hvp, grads, variables, step, previous, replica_sum=None):
        if replica_sum is not None:
            return self._distributed(hvp, grads, variables, step, previous, replica_sum)
        if self.request.interval == 1:
            return self.compute(hvp, grads, variables, step, previous)
        return ops.cond(
            self.optimizer.is_refresh(step),
            lambda: self.compute(hvp, grads, variables, step, previous),
            lambda: list(previous),
        )

    def _distributed(self, hvp, grads, variables, step, previous, replica_sum):
        if self.request.kind != "diagonal":
            summed_hvp = lambda vectors: replica_sum(hvp(vectors))  # noqa: E731
            return self.compute(summed_hvp, replica_sum(grads), variables, step, previous)
        if self.request.interval == 1:
            return self._keep_finite(replica_sum(self._estimate(hvp, grads, variables, step)), previous)
        refresh = self.optimizer.is_refresh(step)
        local = ops.cond(
            refresh,
            lambda: self._estimate(hvp, grads, variables, step),
            lambda: [ops.zeros_like(p) for p in previous],
        )
        summed = replica_sum(local)
        return self._keep_finite([ops.where(refresh, s, ops.cast(p, s.dtype)) for s, p in zip(summed, previous)], previous)
