"""Curvature estimates from a Hessian-vector-product oracle, in `keras.ops`.

`hvp(vectors) -> H @ vectors` is any function on lists of tensors shaped like
the trainable variables (one per backend, see `keras_optzoo.backend`). These
run inside jitted train steps on every backend.
"""

from keras import ops

from keras_optzoo.backend import dot


def hutchinson(hvp, probes):
    """Hutchinson's diagonal estimate mean_i z_i * (H z_i) over Rademacher probes z_i."""
    total = None
    for z in probes:
        estimate = [ops.multiply(zi, hzi) for zi, hzi in zip(z, hvp(z))]
        total = estimate if total is None else [t + e for t, e in zip(total, estimate)]
    return [t / float(len(probes)) for t in total]


def conjugate_gradient(hvp, rhs, damping, iterations, tolerance=1e-20):
    """Truncated CG for (H + damping I) p = rhs, from p = 0.

    Runs a fixed number of iterations (so it traces into XLA); stops updating
    once the residual is below `tolerance` or a direction of non-positive
    curvature appears (the usual truncated-Newton safeguard).
    """
    x = [ops.zeros_like(r) for r in rhs]
    r = list(rhs)
    p = list(rhs)
    rs = dot(r, r)
    active = ops.cast(rs > tolerance, rs.dtype)
    for _ in range(iterations):
        ap = [h + damping * pi for h, pi in zip(hvp(p), p)]
        p_ap = dot(p, ap)
        active = active * ops.cast(p_ap > 0, rs.dtype) * ops.cast(rs > tolerance, rs.dtype)
        alpha = active * rs / ops.where(p_ap > 0, p_ap, ops.ones_like(p_ap))
        x = [xi + alpha * pi for xi, pi in zip(x, p)]
        r = [ri - alpha * api for ri, api in zip(r, ap)]
        rs_new = dot(r, r)
        beta = active * rs_new / ops.where(rs > 0, rs, ops.ones_like(rs))
        p = [ri + beta * pi for ri, pi in zip(r, p)]
        rs = ops.where(active > 0, rs_new, rs)
    return x
