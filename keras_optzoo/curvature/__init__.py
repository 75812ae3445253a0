"""Hessian information of a Keras model's training loss, on every backend.

- `hvp(model, loss_fn, x, y, vectors)`: exact Hessian-vector products;
- `hutchinson_diagonal` / `hutchinson_trace`: Rademacher-probe estimates;
- `top_eigenvalues(k)`: Lanczos with full reorthogonalisation;
- `with_curvature(model)`: lets `model.fit` feed second-order optimizers.

The loss is `loss_fn(y, model(x, training=False))` plus the model's
regularization losses (`model.losses`); `loss_fn` is a Keras loss (name or
instance) or any callable returning a scalar. training=False keeps the
curvature of a dropout model deterministic.
"""

import numpy as np

import keras

from keras_optzoo import _validation, backend
from keras_optzoo.curvature.model import CurvatureModel, with_curvature


def _loss(loss_fn):
    if isinstance(loss_fn, str):  # a Keras loss name: mean over the batch, as `compile` does
        per_sample = keras.losses.get(loss_fn)
        return lambda y_true, y_pred: keras.ops.mean(per_sample(y_true, y_pred))
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be a Keras loss name or a callable; received {loss_fn!r}.")
    return loss_fn


def _to_numpy(tensors):
    return [np.asarray(keras.ops.convert_to_numpy(t), dtype="float64") for t in tensors]


def hvp(model, loss_fn, x, y, vectors):
    """H @ v for each v in `vectors` (a list shaped like `model.trainable_variables`,
    or a list of such lists). Returns NumPy arrays in the same structure."""
    _, _, oracle = _oracle(model, loss_fn, x, y)
    single = len(vectors) > 0 and not isinstance(vectors[0], (list, tuple))
    sets = [vectors] if single else vectors
    out = [_to_numpy(oracle([keras.ops.convert_to_tensor(np.asarray(v, "float32")) for v in s])) for s in sets]
    return out[0] if single else out


def _probes(model, num_probes, seed):
    rng = np.random.default_rng(seed)
    for _ in range(num_probes):
        yield [rng.choice(np.array([-1.0, 1.0], "float32"), size=tuple(v.shape)) for v in model.trainable_variables]


def _oracle(model, loss_fn, x, y):
    """(loss, grads, hvp) at (x, y): one forward/gradient set-up, shared by every estimate."""
    return backend.loss_and_hvp(model, _loss(loss_fn), x, y)


def _hutchinson(oracle, model, num_probes, seed):
    total = None
    for z in _probes(model, num_probes, seed):
        est = [zi * hz for zi, hz in zip(z, _to_numpy(oracle([keras.ops.convert_to_tensor(a) for a in z])))]
        total = est if total is None else [t + e for t, e in zip(total, est)]
    return [t / num_probes for t in total]


def hutchinson_diagonal(model, loss_fn, x, y, num_probes=100, seed=0):
    """diag(H) ~ mean over Rademacher z of z * (H z). NumPy arrays per variable."""
    _validation.integer("num_probes", num_probes, low=1)
    return _hutchinson(_oracle(model, loss_fn, x, y)[2], model, num_probes, seed)


def hutchinson_trace(model, loss_fn, x, y, num_probes=100, seed=0):
    """tr(H) ~ mean over Rademacher z of z^T H z."""
    return float(sum(np.sum(d) for d in hutchinson_diagonal(model, loss_fn, x, y, num_probes, seed)))


def _krylov_size(model, k, iterations):
    """Validates k and returns the Lanczos space size."""
    k = _validation.integer("k", k, low=1)
    n = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    if k > n:
        raise ValueError(f"`k` must be <= the number of trainable parameters ({n}); received {k}.")
    return min(n, iterations or max(2 * k + 20, 30))


def _lanczos(oracle, model, k, m, seed):
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    sizes = [int(np.prod(s)) for s in shapes]

    def matvec(flat):
        parts = np.split(flat.astype("float32"), np.cumsum(sizes)[:-1])
        vecs = [keras.ops.convert_to_tensor(p.reshape(s)) for p, s in zip(parts, shapes)]
        return np.concatenate([h.ravel() for h in _to_numpy(oracle(vecs))])

    rng = np.random.default_rng(seed)
    q = rng.standard_normal(sum(sizes))
    basis = [q / np.linalg.norm(q)]
    alphas, betas = [], []
    for j in range(m):
        w = matvec(basis[j])
        alphas.append(float(w @ basis[j]))
        for b in basis:  # full reorthogonalisation
            w -= (w @ b) * b
        beta = float(np.linalg.norm(w))
        if j == m - 1 or beta < 1e-10 * max(1.0, abs(alphas[-1])):
            break
        betas.append(beta)
        basis.append(w / beta)
    t = np.diag(alphas) + np.diag(betas[: len(alphas) - 1], 1) + np.diag(betas[: len(alphas) - 1], -1)
    return np.sort(np.linalg.eigvalsh(t))[::-1][:k]


def top_eigenvalues(model, loss_fn, x, y, k=1, iterations=None, seed=0):
    """The k largest (algebraic) Hessian eigenvalues, by Lanczos with full
    reorthogonalisation (a Krylov space of `iterations` HVPs, default
    max(2k + 20, 30), capped at the parameter count). Descending order."""
    m = _krylov_size(model, k, iterations)
    return _lanczos(_oracle(model, loss_fn, x, y)[2], model, k, m, seed)


__all__ = [
    "CurvatureModel",
    "hvp",
    "hutchinson_diagonal",
    "hutchinson_trace",
    "top_eigenvalues",
    "with_curvature",
]
