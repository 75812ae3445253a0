"""torch: the SOAP step in plain torch ops (Shampoo's: `kernels_shampoo`), listed
in `kernels.KERNELS`.

The keras.ops code of `optimizers/kronecker.py` costs ~40 Keras op
dispatches per variable per step on torch (each converts its inputs and
checks dtypes); these run the same arithmetic, in the same order, as torch
calls on the variables' tensors in place. Whether a step starts, refreshes
or preconditions is decided from `iterations` read once on the host, so a
step that does not refresh does no refresh work at all (the keras.ops code
selects between branches). float32 variables only: anything else (the
mixed-precision policies keep float32 variables; a float16 or bfloat16
variable set) returns False and runs the keras.ops code.
"""

import keras
import numpy as np
import torch

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend.torch.kernels_foreach import _correction


def _accumulate(factor, x, d, beta, alpha):
    """factor <- beta * factor + alpha * (x's mode-d outer product), in place
    and in one matrix product (the scaling rides in the BLAS call)."""
    a = torch.movedim(x, d, 0).reshape(x.shape[d], -1)
    factor.addmm_(a, a.T, beta=beta, alpha=alpha)


def _multiply_modes(x, matrices, transpose=False):
    """As `kronecker._multiply_modes`: x x_d M_d^T for each d (M_d None:
    that axis left alone), x x_d M_d with `transpose`."""
    if all(m is None for m in matrices):
        return x
    for m in matrices:
        x = torch.movedim(x, 0, -1) if m is None else torch.tensordot(x, m, dims=([0], [1 if transpose else 0]))
    return x


def _host_step(optimizer):
    """`iterations` as a Python int (a tensor, not a variable, under gradient
    accumulation): one host read per step, for all variables."""
    return int(torch.as_tensor(keras.ops.convert_to_tensor(optimizer.iterations)))


def _finite(x):
    return torch.isfinite(x).all()


def _count(optimizer, oks):
    if oks:
        failed = optimizer._failed.value
        failed.add_(torch.stack([~ok for ok in oks]).sum().to(failed.dtype))


def _eigenbasis(factor, previous):
    n = factor.shape[0]
    eye = torch.eye(n, dtype=factor.dtype, device=factor.device)
    finite_in = _finite(factor)
    _, vectors = torch.linalg.eigh(torch.where(finite_in, factor, eye) + 1e-30 * eye)
    vectors = torch.flip(vectors, dims=[1])
    ok = finite_in & _finite(vectors)
    return torch.where(ok, vectors, previous), ok


def _soap(optimizer, hp, variables, params, grads, lr):
    if params[0].dtype != torch.float32:
        return False
    s = _host_step(optimizer)  # 0-based: the step about to be taken
    lr = float(lr)
    b1, b2, eps = hp["beta_1"], hp["beta_2"], hp["epsilon"]
    w_factor = 1.0 - (b2 if hp["shampoo_beta"] is None else hp["shampoo_beta"])
    scale = lr * np.sqrt(_correction(b2, s)) / _correction(b1, s) if s else 0.0
    refresh = s > 0 and s % hp["precondition_frequency"] == 0
    oks = []
    for variable, theta, g in zip(variables, params, grads):
        shape, _ = optimizer._layout(variable)
        pairs = optimizer._factors[compat.variable_index(optimizer, variable)]
        g = g.reshape(shape)
        live = [d for d, p in enumerate(pairs) if p is not None]
        factors = [None if p is None else p[0].value for p in pairs]
        bases = [None if p is None else p[1].value for p in pairs]
        for d in live:
            _accumulate(factors[d], g, d, 1.0 - w_factor, w_factor)
        if s == 0:  # the factors and their eigenbases; weights, m and v stay
            for d in live:
                q, ok = _eigenbasis(factors[d], bases[d])
                bases[d].copy_(q)
                oks.append(ok)
            continue
        m = optimizer._slot("momentum", variable).value.view(shape)
        v = optimizer._slot("velocity", variable).value.view(shape)
        g_rot = _multiply_modes(g, bases)
        m.lerp_(g, 1.0 - b1)
        v.lerp_(torch.square(g_rot), 1.0 - b2)
        direction = _multiply_modes(m, bases) / v.sqrt().add_(eps)
        direction = _multiply_modes(direction, bases, transpose=True)
        theta.view(shape).sub_(direction, alpha=scale)
        if optimizer._decay(variable):
            theta.mul_(1.0 - lr * optimizer.weight_decay)
        if refresh:
            for d in live:  # one power iteration + QR, v re-ordered to match
                product = factors[d] @ bases[d]
                order = torch.argsort(-(bases[d] * product).sum(dim=0))
                q, _ = torch.linalg.qr(product[:, order], mode="reduced")
                ok = _finite(q)
                v.copy_(torch.where(ok, v.index_select(d, order), v))
                bases[d].copy_(torch.where(ok, q, bases[d]))
                oks.append(ok)
    _count(optimizer, oks)
