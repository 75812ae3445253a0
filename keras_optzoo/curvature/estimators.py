"""Curvature estimates from a Hessian-vector-product oracle, in `keras.ops`.

`hvp(vectors) -> H @ vectors` is any function on lists of tensors shaped like
the trainable variables (one per backend, see `keras_optzoo.backend`). These
run inside jitted train steps on every backend.
"""

from keras import ops

from keras_optzoo import backend
from keras_optzoo.backend import dot


def hutchinson(hvp, probes):
    """Hutchinson's diagonal estimate mean_i z_i * (H z_i) over Rademacher probes z_i."""
    total = None
    for z in probes:
        # H z is a temporary: where the backend can, z * H z takes its memory.
        estimate = backend.multiply_into(hvp(z), z)
        total = estimate if total is None else [t + e for t, e in zip(total, estimate)]
    return total if len(probes) == 1 else [t / float(len(probes)) for t in total]


def conjugate_gradient(hvp, rhs, damping, iterations, preconditioner=None, tolerance=1e-20):
    """Truncated (preconditioned) CG for (H + damping I) p = rhs, from p = 0.

    `preconditioner`: None, or a list of positive tensors M (a diagonal
    approximation of H + damping I); CG then runs on M^-1 (H + damping I).
    Runs a fixed number of iterations (so it traces into XLA); stops updating
    once the residual is below `tolerance` or a direction of non-positive
    curvature appears (the usual truncated-Newton safeguard). Returns (p, r)
    with r = rhs - (H + damping I) p, the final residual.
    """
    def solve(r):
        return list(r) if preconditioner is None else [ri / mi for ri, mi in zip(r, preconditioner)]

    x = [ops.zeros_like(r) for r in rhs]
    r = list(rhs)
    z = solve(r)
    p = list(z)
    rz = dot(r, z)
    active = ops.cast(dot(r, r) > tolerance, rz.dtype)
    for _ in range(iterations):
        ap = [h + damping * pi for h, pi in zip(hvp(p), p)]
        p_ap = dot(p, ap)
        active = active * ops.cast(p_ap > 0, rz.dtype) * ops.cast(dot(r, r) > tolerance, rz.dtype)
        alpha = active * rz / ops.where(p_ap > 0, p_ap, ops.ones_like(p_ap))
        x = [xi + alpha * pi for xi, pi in zip(x, p)]
        r = [ri - alpha * api for ri, api in zip(r, ap)]
        z = solve(r)
        rz_new = dot(r, z)
        beta = active * rz_new / ops.where(rz > 0, rz, ops.ones_like(rz))
        p = [zi + beta * pi for zi, pi in zip(z, p)]
        rz = ops.where(active > 0, rz_new, rz)
    return x, r


def gauss_newton_product(oracle, loss_of_outputs):
    """v -> G v = J^T H_L J v, the generalized Gauss-Newton matrix of the
    step's loss (J: Jacobian of the model's outputs in the weights, H_L: the
    Hessian of `loss_of_outputs` in the outputs). Positive semi-definite
    whenever the loss is convex in the outputs (cross-entropy, squared error),
    unlike H; the regularization losses' curvature is not in it."""
    outputs = oracle.outputs

    def product(vectors):
        return oracle.vjp(backend.output_hvp(loss_of_outputs, outputs, oracle.jvp(vectors)))

    return product


def sample_labels(outputs, loss_kind, from_logits, seed, step):
    """Labels drawn from the model's own predictive distribution (Sophia-G):
    `loss_kind` "sparse" (class indices), "categorical" (one-hot) or
    "binary" (0/1 per output), from probabilities or, with `from_logits`,
    logits. Categorical draws use the Gumbel-max trick on uniform numbers
    that are a function of (seed, step)."""
    u = ops.clip(ops.cast(backend.uniform(outputs, seed, step), outputs.dtype), 1e-7, 1.0 - 1e-7)
    if loss_kind == "binary":
        p = ops.sigmoid(outputs) if from_logits else outputs
        return ops.cast(ops.less(u, p), outputs.dtype)
    logits = outputs if from_logits else ops.log(ops.clip(outputs, 1e-12, 1.0))
    labels = ops.argmax(logits - ops.log(-ops.log(u)), axis=-1)
    if loss_kind == "sparse":
        return labels
    return ops.one_hot(labels, ops.shape(outputs)[-1], dtype=outputs.dtype)
