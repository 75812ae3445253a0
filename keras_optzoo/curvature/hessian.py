"""`Hessian(model, loss, x, y)`: the Hessian of a Keras model's loss on one
batch, through Hessian-vector products (in the spirit of PyHessian)."""

import numpy as np

import keras

from keras_optzoo import _validation, backend
from keras_optzoo.curvature.estimators import hutchinson
from keras_optzoo.curvature.model import CurvatureModel
from keras_optzoo.curvature.update import probes as _rademacher_probes
from keras_optzoo.optimizers.second_order import CurvatureRequest


def loss_function(loss):
    """A scalar loss callable from a Keras loss name or instance (averaged over
    the batch, as `compile` does) or any callable returning a scalar."""
    if isinstance(loss, str):
        per_sample = keras.losses.get(loss)
        return lambda y_true, y_pred: keras.ops.mean(per_sample(y_true, y_pred))
    if isinstance(loss, keras.losses.Loss) or callable(loss):
        return loss
    raise TypeError(f"`loss` must be a Keras loss name, a keras.losses.Loss or a callable; received {loss!r}.")


def _to_numpy(tensors):
    return [np.asarray(keras.ops.convert_to_numpy(t), dtype="float64") for t in tensors]


class Hessian:
    """The Hessian H of `loss(y, model(x, training=False))` plus the model's
    regularization losses, with respect to `model.trainable_variables`.

    Every method evaluates at the model's weights *at the time of the call*,
    so one object can follow a model through training (CurvatureLogger keeps
    one). Nothing n x n is formed: everything is built from exact HVPs
    (nested GradientTapes on TensorFlow, forward-over-reverse `jax.jvp` of
    `jax.grad` on JAX, double backward on torch). On JAX the loss, gradient
    and HVP are compiled once per `Hessian` (weights and batch are arguments)
    and reused by every later call; on TensorFlow they are `tf.function`s.

    Args:
        model: a built `keras.Model` (a `with_curvature` model is unwrapped).
        loss: a Keras loss name ("sparse_categorical_crossentropy"), a
            `keras.losses.Loss`, or a callable `(y_true, y_pred) -> scalar`.
        x: the inputs of the batch.
        y: the targets of the batch.

    Example:

        h = keras_optzoo.curvature.Hessian(model, "sparse_categorical_crossentropy", x, y)
        h.top_eigenvalues(k=3); h.trace(num_probes=100); h.density()
    """

    def __init__(self, model, loss, x, y):
        if not isinstance(model, keras.Model):
            raise TypeError(f"`model` must be a keras.Model; received {type(model).__name__}.")
        self.model = model.model if isinstance(model, CurvatureModel) else model
        self.loss = loss_function(loss)
        self.x, self.y = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
        self._program = backend.HessianProgram(self.model, self.loss)

    @property
    def _variables(self):
        return self.model.trainable_variables

    @property
    def num_parameters(self):
        return sum(int(np.prod(v.shape)) for v in self._variables)

    def _evaluate(self):
        return self._program.evaluate(self.x, self.y)

    # -- values ----------------------------------------------------------------
    def gradient(self):
        """The gradient, NumPy float64 arrays shaped like the variables."""
        return _to_numpy(self._evaluate()[1])

    def hvp(self, vectors):
        """H @ v for v shaped like `model.trainable_variables` (a list of
        arrays), or for each of a list of such lists. NumPy out, same structure."""
        single = len(vectors) > 0 and not isinstance(vectors[0], (list, tuple))
        sets = [vectors] if single else vectors
        hvp = self._evaluate()[2]
        out = [_to_numpy(hvp([keras.ops.convert_to_tensor(np.asarray(v, "float32")) for v in s])) for s in sets]
        return out[0] if single else out

    def diagonal(self, num_probes=100, seed=0):
        """Hutchinson's estimate of diag(H): the mean of z * (H z) over
        `num_probes` Rademacher probes z (the same estimator and probes the
        second-order optimizers use). NumPy arrays shaped like the variables."""
        return self._diagonal(self._evaluate()[2], num_probes, seed)

    def trace(self, num_probes=100, seed=0):
        """Hutchinson's estimate of tr(H), the mean of z^T H z."""
        return float(sum(np.sum(d) for d in self.diagonal(num_probes, seed)))

    def top_eigenvalues(self, k=1, iterations=None, seed=0):
        """The k largest (algebraic) eigenvalues, descending, by Lanczos with
        full reorthogonalisation in a Krylov space of `iterations` HVPs
        (default max(2k + 20, 30), capped at the parameter count)."""
        m = self._krylov_size(k, iterations)
        return self._top(self._evaluate()[2], k, m, seed)

    def density(self, iterations=30, num_runs=1, seed=0):
        """The spectral density by stochastic Lanczos quadrature (Ubaru, Chen
        and Saad 2017; Ghorbani et al. 2019): for each of `num_runs` random
        unit vectors q, `iterations` Lanczos steps give a tridiagonal T whose
        eigenvalues are the nodes and whose eigenvectors' squared first
        entries are the weights (they sum to 1 per run). Returns `(nodes,
        weights)`, NumPy arrays of up to `num_runs * iterations` entries
        (fewer where Lanczos meets an invariant subspace early, as with
        repeated eigenvalues), weights divided by `num_runs`:
        sum(weights * f(nodes)) estimates tr(f(H)) / n.
        Smooth it for a plot, e.g. with a Gaussian kernel over a grid."""
        m = _validation.integer("iterations", iterations, low=1)
        m = min(m, self.num_parameters)
        num_runs = _validation.integer("num_runs", num_runs, low=1)
        matvec = self._matvec(self._evaluate()[2])
        rng = np.random.default_rng(seed)
        nodes, weights = [], []
        for _ in range(num_runs):
            alphas, betas = _lanczos(matvec, rng.standard_normal(self.num_parameters), m)
            values, vectors = np.linalg.eigh(_tridiagonal(alphas, betas))
            nodes.append(values)
            weights.append(vectors[0] ** 2 / num_runs)
        return np.concatenate(nodes), np.concatenate(weights)

    def statistics(self, k=1, num_probes=10, lanczos_iterations=20, seed=0):
        """One evaluation shared by the top-k eigenvalues, the trace and the
        gradient norm (what `CurvatureLogger` writes): a dict with
        `top_eigenvalues` (array), `trace`, `grad_norm` and `loss`."""
        m = self._krylov_size(k, lanczos_iterations)
        num_probes = _validation.integer("num_probes", num_probes, low=1)
        loss, grads, hvp = self._evaluate()
        return {
            "top_eigenvalues": self._top(hvp, k, m, seed),
            "trace": float(sum(np.sum(d) for d in self._diagonal(hvp, num_probes, seed))),
            "grad_norm": float(np.sqrt(sum(np.sum(np.square(g)) for g in _to_numpy(grads)))),
            "loss": float(keras.ops.convert_to_numpy(loss)),
        }

    # -- pieces ------------------------------------------------------------------
    def _diagonal(self, hvp, num_probes, seed):
        num_probes = _validation.integer("num_probes", num_probes, low=1)
        request = CurvatureRequest("diagonal", 1, num_probes=num_probes, seed=_validation.integer("seed", seed, low=0))
        return _to_numpy(hutchinson(hvp, _rademacher_probes(request, self._variables, 0)))

    def _krylov_size(self, k, iterations):
        k = _validation.integer("k", k, low=1)
        n = self.num_parameters
        if k > n:
            raise ValueError(f"`k` must be <= the number of trainable parameters ({n}); received {k}.")
        return min(n, iterations or max(2 * k + 20, 30))

    def _matvec(self, hvp):
        shapes = [tuple(v.shape) for v in self._variables]
        sizes = [int(np.prod(s)) for s in shapes]

        def matvec(flat):
            parts = np.split(flat.astype("float32"), np.cumsum(sizes)[:-1])
            product = hvp([keras.ops.convert_to_tensor(p.reshape(s)) for p, s in zip(parts, shapes)])
            return np.concatenate([h.ravel() for h in _to_numpy(product)])

        return matvec

    def _top(self, hvp, k, m, seed):
        start = np.random.default_rng(seed).standard_normal(self.num_parameters)
        alphas, betas = _lanczos(self._matvec(hvp), start, m)
        return np.sort(np.linalg.eigvalsh(_tridiagonal(alphas, betas)))[::-1][:k]


def _lanczos(matvec, start, m):
    """m Lanczos steps from `start` with full reorthogonalisation (stopped
    early at an invariant subspace); the tridiagonal's (alphas, betas)."""
    basis = np.zeros((m, len(start)))  # rows: the orthonormal Lanczos vectors
    basis[0] = start / np.linalg.norm(start)
    alphas, betas = [], []
    for j in range(m):
        w = matvec(basis[j])
        alphas.append(float(w @ basis[j]))
        w -= alphas[-1] * basis[j] + (betas[-1] * basis[j - 1] if j else 0.0)  # the three-term recurrence
        q = basis[: j + 1]
        w -= q.T @ (q @ w)  # full reorthogonalisation, one Gram-Schmidt pass as two matrix products
        beta = float(np.linalg.norm(w))
        if j == m - 1 or beta < 1e-10 * max(1.0, abs(alphas[-1])):
            break
        betas.append(beta)
        basis[j + 1] = w / beta
    return alphas, betas[: len(alphas) - 1]


def _tridiagonal(alphas, betas):
    return np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
