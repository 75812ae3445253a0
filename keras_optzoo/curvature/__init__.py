"""Hessian information of a Keras model's training loss, on every backend.

- `Hessian(model, loss, x, y)`: `.hvp(v)`, `.diagonal()`, `.trace()`,
  `.top_eigenvalues(k)`, `.density()` (stochastic Lanczos quadrature),
  `.statistics()`;
- the one-call functions `hvp`, `hutchinson_diagonal`, `hutchinson_trace`,
  `top_eigenvalues` (each builds a `Hessian` and asks it once);
- `with_curvature(model)`: lets `model.fit` feed second-order optimizers.

The loss is `loss(y, model(x, training=False))` plus the model's
regularization losses (`model.losses`); `loss` is a Keras loss (name or
instance) or any callable `(y_true, y_pred)` (per-sample values are
averaged, as `compile` does). training=False keeps the curvature of a
dropout model deterministic. Bad input (an unbuilt model, no trainable
weights, `x` or `y` that do not fit, a probability loss on a logits model)
raises a ValueError naming the argument when the `Hessian` is built.
"""

from keras_optzoo.curvature.hessian import Hessian
from keras_optzoo.curvature.model import CurvatureModel, with_curvature
from keras_optzoo.curvature.update import CurvatureUpdate


def hvp(model, loss, x, y, vectors):
    """H @ v for each v in `vectors` (a list shaped like `model.trainable_variables`,
    or a list of such lists). Returns NumPy arrays in the same structure."""
    return Hessian(model, loss, x, y).hvp(vectors)


def hutchinson_diagonal(model, loss, x, y, num_probes=100, seed=0):
    """diag(H) ~ mean over Rademacher z of z * (H z). NumPy arrays per variable."""
    return Hessian(model, loss, x, y).diagonal(num_probes, seed)


def hutchinson_trace(model, loss, x, y, num_probes=100, seed=0):
    """tr(H) ~ mean over Rademacher z of z^T H z."""
    return Hessian(model, loss, x, y).trace(num_probes, seed)


def top_eigenvalues(model, loss, x, y, k=1, iterations=None, seed=0):
    """The k largest (algebraic) Hessian eigenvalues, by Lanczos with full
    reorthogonalisation (a Krylov space of `iterations` HVPs, default
    max(2k + 20, 30), capped at the parameter count). Descending order."""
    return Hessian(model, loss, x, y).top_eigenvalues(k, iterations, seed)


__all__ = [
    "CurvatureModel",
    "CurvatureUpdate",
    "Hessian",
    "hvp",
    "hutchinson_diagonal",
    "hutchinson_trace",
    "top_eigenvalues",
    "with_curvature",
]
