"""What the `with_curvature` train step computes on a refresh step, from the
optimizer's `CurvatureRequest`, in `keras.ops` (it runs inside the jitted
train steps of every backend)."""

import keras
from keras import ops

from keras_optzoo import _keras_compat as compat
from keras_optzoo import backend
from keras_optzoo.backend import dot
from keras_optzoo.curvature.estimators import conjugate_gradient, gauss_newton_product, hutchinson, sample_labels

# Martens (2010), section 4.1: the Levenberg-Marquardt rule.
DAMPING_UP, DAMPING_DOWN = 1.5, 2.0 / 3.0
DAMPING_RANGE = (1e-6, 1e6)
# The losses Sophia-G can sample labels for: (kind, from_logits) by loss name.
_SAMPLED_LOSSES = {
    "sparse_categorical_crossentropy": "sparse", "SparseCategoricalCrossentropy": "sparse",
    "categorical_crossentropy": "categorical", "CategoricalCrossentropy": "categorical",
    "binary_crossentropy": "binary", "BinaryCrossentropy": "binary",
}  # fmt: skip


def probes(request, variables, step):
    """The request's Rademacher probes at `step` (probe j from seed + 7919 j)."""
    return [backend.rademacher(variables, request.seed + 7919 * j, step) for j in range(request.num_probes)]


def sampled_loss_kind(model):
    """(kind, from_logits) of the compiled loss for Sophia-G's label sampling;
    ValueError naming the loss when it has no predictive distribution to sample."""
    loss = model.loss
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    name = type(loss).__name__ if isinstance(loss, keras.losses.Loss) else getattr(loss, "__name__", repr(loss))
    if name not in _SAMPLED_LOSSES:
        raise ValueError(
            f"SophiaG samples labels from the model's predictive distribution, which needs a single "
            f"crossentropy loss: one of {', '.join(sorted(set(_SAMPLED_LOSSES)))}; the model is compiled "
            f"with loss={model.loss!r}. Use SophiaH (the Hutchinson estimator) for other losses."
        )
    config = loss.get_config() if isinstance(loss, keras.losses.Loss) else {}
    return _SAMPLED_LOSSES[name], bool(config.get("from_logits", False))


def _select(pred, true_fn, false_fn):
    """A branch chosen by a Python bool (torch, host-side) or by `ops.cond`."""
    if isinstance(pred, bool):
        return true_fn() if pred else false_fn()
    return ops.cond(pred, true_fn, false_fn)


class CurvatureUpdate:
    """The curvature input of a second-order optimizer for one train step.

    The train step builds an oracle of the step's own loss (see
    `keras_optzoo.backend`) with what `needs` lists, and calls
    `compute(oracle, step, previous)` (the new contents of
    `optimizer.curvature_slots()`) on refresh steps; `always` says the
    update runs every step (Newton). `update(oracle, step, previous,
    replica_sum=None)` does the gating itself (`ops.cond` on
    `optimizer.is_refresh(step)`, so nothing runs on other steps, also under
    XLA). Entries that come out non-finite (an overflow under float16
    compute) keep their previous value, so one bad estimate cannot poison
    the running averages.

    `replica_sum` (TensorFlow under tf.distribute) sums tensors over the
    replicas, each of which sees its share of the batch. The diagonal and
    Sophia-G estimates are sums of per-replica parts before a last
    non-linear step, so each replica estimates under the cond and one sum
    follows outside it (collectives cannot run inside one); Newton runs
    every step with every product, gradient and loss summed.
    """

    def __init__(self, optimizer, model=None):
        self.optimizer = optimizer
        self.request = request = optimizer.curvature_request()
        self.always = request.kind == "newton" or request.interval == 1
        if request.kind == "gauss_newton_bartlett":
            self.needs = {"outputs"}
        elif request.kind == "newton":
            self.needs = {"outputs" if request.matrix == "ggn" else "hessian"}
            self.needs |= {"loss_at"} if request.adaptive_damping else set()
        else:
            self.needs = {"hessian"}
        self._model = model
        if request.kind == "gauss_newton_bartlett":
            self._sampling = sampled_loss_kind(model)

    def _loss_of_outputs(self, y_true, sample_weight=None):
        return lambda y_pred: compat.compiled_loss(self._model, y_true, y_pred, sample_weight)

    # -- the estimates ---------------------------------------------------------
    def _linear_part(self, oracle, step):
        """The part of the estimate that adds up over replicas."""
        request = self.request
        if request.kind == "diagonal":
            return hutchinson(oracle.hvp, probes(request, oracle.grads, step))
        labels = sample_labels(oracle.outputs, *self._sampling, request.seed, step)
        cotangent = backend.output_grad(self._loss_of_outputs(labels), oracle.outputs)
        return oracle.vjp(cotangent)

    def _finish(self, summed, oracle, replicas=1):
        """The estimate from the sum of the replicas' linear parts."""
        if self.request.kind == "diagonal":
            return summed
        # Gauss-Newton-Bartlett: B * g_hat^2, g_hat the mean gradient over the
        # batch of B examples (all replicas') at the sampled labels.
        batch_size = ops.cast(ops.shape(oracle.outputs)[0], "float32") * ops.cast(replicas, "float32")
        return [ops.multiply(ops.square(g), ops.cast(batch_size, g.dtype)) for g in summed]

    def compute(self, oracle, step, previous, refresh=None):
        """The new slot contents on a refresh step. `refresh` True or False:
        the caller chose (JAX's two programs, on the host); with True the
        estimate is kept only where `is_refresh(step)` confirms it on the
        device (a select, not a cond), and Newton's diagonal estimates
        without a cond. None: Newton's diagonal decides from `is_refresh`."""
        if self.request.kind == "newton":
            return self._newton(oracle, oracle.grads, oracle.loss, oracle.loss_at, step, previous, refresh=refresh)
        new = backend.keep_finite(self._finish(self._linear_part(oracle, step), oracle), previous)
        return self._confirmed(new, previous, step) if refresh is True else new

    def _confirmed(self, new, previous, step):
        """`new` where `is_refresh(step)` holds on the device, else `previous`."""
        if self.request.interval == 1:
            return new
        keep = self.optimizer.is_refresh(step)
        return [ops.where(keep, n, ops.cast(p, n.dtype)) for n, p in zip(new, previous)]

    def __call__(self, oracle, step, previous, replica_sum=None):
        if replica_sum is not None:
            return self._distributed(oracle, step, previous, replica_sum)
        if self.always:
            return self.compute(oracle, step, previous)
        return ops.cond(
            self.optimizer.is_refresh(step), lambda: self.compute(oracle, step, previous), lambda: list(previous)
        )

    # -- Newton -----------------------------------------------------------------
    def _product(self, oracle):
        if self.request.matrix == "ggn":
            y, sample_weight = oracle.targets
            return gauss_newton_product(oracle, self._loss_of_outputs(y, sample_weight))
        return oracle.hvp

    def _newton(self, oracle, grads, loss, loss_at, step, previous, product=None, replica_sum=None, refresh=None):
        """The direction d of a damped Newton step theta <- theta - lr d, and
        the Levenberg-Marquardt update of the damping lambda (Martens 2010):
        rho = (f(theta - d) - f(theta)) / (q(-d) - q(0)) on the step's batch,
        q the quadratic model -g.d + d.B d / 2 (B undamped); lambda * 3/2 when
        rho < 1/4, * 2/3 when rho > 3/4. A step that raises the batch loss
        (or makes it non-finite) is not taken."""
        request, n = self.request, len(grads)
        product = product or self._product(oracle)
        damping = ops.cast(previous[n], grads[0].dtype)
        if request.method == "diagonal":
            d_prev = previous[n + 1:]
            # No cond at interval 1 or where the caller knows (JAX's two programs):
            # on JAX an HVP inside one compiles a conv kernel's gradient without
            # XLA:CPU's fast kernel (backend/jax/train_step.py).
            known = refresh is not None
            if not known:
                refresh = True if request.interval == 1 else self.optimizer.is_refresh(step)
            if replica_sum is None:
                diag = _select(refresh, lambda: hutchinson(product, probes(request, grads, step)), lambda: list(d_prev))
                if known and refresh:  # the host's choice, confirmed on the device
                    diag = self._confirmed(diag, d_prev, step)
            else:  # each replica's share under the cond, one sum outside it (a collective cannot run inside)
                local = _select(refresh, lambda: hutchinson(self._product(oracle), probes(request, grads, step)),
                                lambda: [ops.zeros_like(d) for d in d_prev])  # fmt: skip
                diag = [ops.where(refresh, s, ops.cast(p, s.dtype)) for s, p in zip(replica_sum(local), d_prev)]
            diag = backend.keep_finite(diag, d_prev)
            direction = [g / (ops.abs(h) + damping) for g, h in zip(grads, diag)]
            curvature = dot(direction, [ops.abs(h) * d for h, d in zip(diag, direction)])
            extra = diag
        else:
            preconditioner = None
            if request.precondition:
                diag = hutchinson(product, probes(request, grads, step))
                preconditioner = [ops.abs(h) + damping for h in diag]
            direction, residual = conjugate_gradient(product, grads, damping, request.cg_iterations, preconditioner)
            # d.(B + lambda) d = d.g - d.r from the CG residual: no extra product.
            curvature = dot(direction, grads) - dot(direction, residual) - damping * dot(direction, direction)
            extra = []
        if request.adaptive_damping:
            predicted = curvature / 2.0 - dot(grads, direction)
            actual = ops.cast(loss_at([-d for d in direction]), loss.dtype) - loss
            rho = actual / ops.where(predicted < 0, predicted, -ops.ones_like(predicted))
            taken = ops.logical_and(ops.isfinite(actual), actual <= 0)
            factor = ops.where(ops.logical_or(ops.logical_not(taken), rho < 0.25), DAMPING_UP,
                               ops.where(rho > 0.75, DAMPING_DOWN, 1.0))  # fmt: skip
            damping = ops.clip(damping * ops.cast(factor, damping.dtype), *DAMPING_RANGE)
            direction = [ops.where(taken, d, ops.zeros_like(d)) for d in direction]
        direction = backend.keep_finite(direction, [ops.zeros_like(d) for d in direction])
        return direction + [ops.reshape(damping, ops.shape(previous[n]))] + list(extra)

    def _distributed(self, oracle, step, previous, replica_sum):
        replicas = replica_sum([ops.ones(())])[0]
        if self.request.kind == "newton":
            product = self._product(oracle)
            summed = lambda vectors: replica_sum(product(vectors))  # noqa: E731
            loss_at = lambda deltas: replica_sum([oracle.loss_at(deltas)])[0]  # noqa: E731
            loss = replica_sum([oracle.loss])[0]
            new = self._newton(oracle, replica_sum(oracle.grads), loss, loss_at, step, previous, summed, replica_sum)
            # Newton hands `apply` its (global) direction as the gradient, and
            # Keras sums gradients over the replicas there: each gives 1 / R.
            n = len(oracle.grads)
            return [d / ops.cast(replicas, d.dtype) for d in new[:n]] + new[n:]
        if self.always:
            local = self._linear_part(oracle, step)
        else:
            local = ops.cond(
                self.optimizer.is_refresh(step),
                lambda: self._linear_part(oracle, step),
                lambda: [ops.zeros_like(p) for p in previous],
            )
        new = self._finish(replica_sum(local), oracle, replicas)
        if not self.always:
            refresh = self.optimizer.is_refresh(step)
            new = [ops.where(refresh, s, ops.cast(p, s.dtype)) for s, p in zip(new, previous)]
        return backend.keep_finite(new, previous)
