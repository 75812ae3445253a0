"""`Hessian(model, loss, x, y)`: the Hessian of a Keras model's loss on one
batch, through Hessian-vector products (in the spirit of PyHessian)."""

import re

import numpy as np

import keras

from keras_optzoo import _validation, backend
from keras_optzoo.curvature.model import CurvatureModel


# Keras losses that read `y_pred` as probabilities unless `from_logits=True`.
_PROBABILITY_LOSSES = {
    "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
    "categorical_crossentropy": "CategoricalCrossentropy",
    "binary_crossentropy": "BinaryCrossentropy",
    "categorical_focal_crossentropy": "CategoricalFocalCrossentropy",
    "binary_focal_crossentropy": "BinaryFocalCrossentropy",
}


def loss_function(loss):
    """A scalar loss callable from a Keras loss name or instance (averaged over
    the batch, as `compile` does) or any callable; a callable that returns
    per-sample values (e.g. `keras.losses.mean_squared_error`) is averaged
    over them, as `compile` does with its default reduction."""
    if isinstance(loss, str):
        try:
            per_sample = keras.losses.get(loss)
        except ValueError as error:
            raise ValueError(f"`loss` {loss!r} is not a Keras loss name ({error}).") from None
        return lambda y_true, y_pred: keras.ops.mean(per_sample(y_true, y_pred))
    if isinstance(loss, keras.losses.Loss):
        return loss
    if callable(loss):
        return lambda y_true, y_pred: keras.ops.mean(loss(y_true, y_pred))
    raise TypeError(f"`loss` must be a Keras loss name, a keras.losses.Loss or a callable; received {loss!r}.")


def _expects_probabilities(loss):
    """The Keras class name of `loss` when it reads y_pred as probabilities, else None."""
    if isinstance(loss, str):
        return _PROBABILITY_LOSSES.get(loss)
    if isinstance(loss, keras.losses.Loss) and type(loss).__name__ in _PROBABILITY_LOSSES.values():
        return None if loss.get_config().get("from_logits", False) else type(loss).__name__
    return None


def check_inputs(model, loss, x, y):
    """Errors at construction, each naming the argument and the fix: an
    unbuilt model, no trainable weights, `x` the model cannot take, `y` the
    loss cannot pair with the outputs, and a probability loss on outputs
    outside [0, 1] (a logits model: the loss would clip them and every
    number would be plausible and wrong)."""
    if not model.built:
        raise ValueError(
            "`model` is not built: call it on a batch (`model(x)`) or give it an Input "
            "(`keras.Input(shape)` first in a Sequential) before computing its Hessian."
        )
    if not model.trainable_variables:
        raise ValueError(
            f"`model` has no trainable weights (of {len(model.weights)} weights, none trainable), so its Hessian "
            "is empty; set `trainable=True` on the layers to differentiate."
        )
    try:
        y_pred = model(x, training=False)
    except Exception as error:  # the framework's message, behind one that names the argument
        raise ValueError(f"`x` does not fit the model (shape {tuple(keras.ops.shape(x))}): {_plain(error)}") from error
    if isinstance(y_pred, (list, tuple, dict)) and isinstance(loss, (str, keras.losses.Loss)):
        raise ValueError(
            f"`model` has {len(y_pred)} outputs and `loss` is one Keras loss: pass a model of the output you "
            "study (`keras.Model(model.inputs, model.outputs[i])`), or a `loss` callable that takes them all."
        )
    name = _expects_probabilities(loss)
    if name is not None:
        values = keras.ops.convert_to_numpy(keras.ops.cast(y_pred, "float32"))
        low, high = float(np.min(values)), float(np.max(values))
        if low < -1e-6 or high > 1 + 1e-6:
            raise ValueError(
                f"`loss` {loss if isinstance(loss, str) else name} reads the model's outputs as probabilities, "
                f"but they range over [{low:.4g}, {high:.4g}]: the model outputs logits. Pass "
                f"`keras.losses.{name}(from_logits=True)` as `loss` (or end the model with a softmax/sigmoid)."
            )
    try:
        value = loss_function(loss)(y, y_pred)
    except Exception as error:
        raise ValueError(
            f"`y` (shape {tuple(keras.ops.shape(y))}) does not match the model's outputs "
            f"(shape {tuple(keras.ops.shape(y_pred))}) under `loss`: {_plain(error)}"
        ) from error
    if len(keras.ops.shape(value)) != 0:
        raise ValueError(
            f"`loss` must reduce to a scalar; it returned shape {tuple(keras.ops.shape(value))}. "
            "Give a Keras loss (or a callable) whose reduction averages over the batch."
        )


def _plain(error):
    """A framework's error message without its terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error))


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
        check_inputs(self.model, loss, self.x, self.y)
        self._program = backend.HessianProgram(self.model, self.loss)

    @property
    def _variables(self):
        return self.model.trainable_variables

    @property
    def num_parameters(self):
        return sum(int(np.prod(v.shape)) for v in self._variables)

    def _evaluate(self):
        return self._program.evaluate(self.x, self.y)

    def _hvp(self):
        """The HVP at the current weights; on JAX and TensorFlow without
        computing (or, the first time, compiling) the loss and gradient."""
        return self._program.evaluate(self.x, self.y, gradient=False)[2]

    # -- values ----------------------------------------------------------------
    def gradient(self):
        """The gradient, NumPy float64 arrays shaped like the variables."""
        return _to_numpy(self._evaluate()[1])

    def hvp(self, vectors):
        """H @ v for v shaped like `model.trainable_variables` (a list of
        arrays), or for each of a list of such lists. NumPy float64 out, same
        structure. Each v is checked against the variables (count, shapes,
        a floating dtype) and computed in its variable's dtype: exact in
        float64 for a float64 model; a float32 model's products are float32
        arithmetic (relative error ~1e-7 of the largest entries), whatever
        the dtype of v."""
        if len(vectors) == 0:
            raise ValueError(f"`vectors` is empty; give one array per trainable variable ({len(self._variables)}).")
        single = not isinstance(vectors[0], (list, tuple))
        sets = [vectors] if single else vectors
        checked = [self._checked(s, "vectors" if single else f"vectors[{j}]") for j, s in enumerate(sets)]
        hvp = self._hvp()
        out = [_to_numpy(hvp(c)) for c in checked]
        return out[0] if single else out

    def _checked(self, vectors, name):
        variables = self._variables
        if len(vectors) != len(variables):
            raise ValueError(
                f"`{name}` must hold one array per trainable variable ({len(variables)}: "
                f"{[tuple(v.shape) for v in variables]}); received {len(vectors)}."
            )
        out = []
        for i, (vector, variable) in enumerate(zip(vectors, variables)):
            array = np.asarray(keras.ops.convert_to_numpy(vector))
            if tuple(array.shape) != tuple(variable.shape):
                raise ValueError(
                    f"`{name}`[{i}] must have the shape of the variable {variable.path!r}, "
                    f"{tuple(variable.shape)}; received {tuple(array.shape)}."
                )
            if array.dtype.kind != "f":
                raise TypeError(f"`{name}`[{i}] must be floating point; received dtype {array.dtype}.")
            out.append(keras.ops.convert_to_tensor(array.astype(variable.dtype)))
        return out

    def diagonal(self, num_probes=100, seed=0):
        """Hutchinson's estimate of diag(H): the mean of z * (H z) over
        `num_probes` Rademacher probes z (the estimator the second-order
        optimizers use). The probes come from NumPy's `default_rng(seed)`
        (`rademacher_probes`), so a seed gives the same probes, and the same
        estimate up to float rounding, on every backend; the optimizers draw
        theirs inside the compiled step with the backend's own generator.
        NumPy arrays shaped like the variables."""
        return self._diagonal(self._hvp(), num_probes, seed)

    def trace(self, num_probes=100, seed=0):
        """Hutchinson's estimate of tr(H), the mean of z^T H z."""
        return float(sum(np.sum(d) for d in self.diagonal(num_probes, seed)))

    def top_eigenvalues(self, k=1, iterations=None, seed=0):
        """The k largest (algebraic) eigenvalues, descending, by Lanczos with
        full reorthogonalisation in a Krylov space of `iterations` HVPs
        (default max(2k + 20, 30), capped at the parameter count)."""
        m = self._krylov_size(k, iterations)
        return self._top(self._hvp(), k, m, seed)

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
        matvec = self._matvec(self._hvp())
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
        """Hutchinson's mean of z * (H z), summed on the host in float64, one
        probe at a time (the backend's eager elementwise ops compile per
        shape on JAX: 1.6 s on MobileNetV2's first call; and num_probes
        probes are never held at once)."""
        num_probes = _validation.integer("num_probes", num_probes, low=1)
        total = [np.zeros(tuple(v.shape)) for v in self._variables]
        for z in _numpy_probes(self._variables, num_probes, seed):
            product = _to_numpy(hvp([keras.ops.convert_to_tensor(p) for p in z]))
            for t, p, h in zip(total, z, product):
                t += p * h
        return [t / num_probes for t in total]

    def _krylov_size(self, k, iterations):
        k = _validation.integer("k", k, low=1)
        n = self.num_parameters
        if k > n:
            raise ValueError(f"`k` must be <= the number of trainable parameters ({n}); received {k}.")
        if iterations is not None:
            iterations = _validation.integer("iterations", iterations, low=k)  # k Ritz values need k HVPs
        return min(n, iterations or max(2 * k + 20, 30))

    def _matvec(self, hvp):
        shapes = [tuple(v.shape) for v in self._variables]
        sizes = [int(np.prod(s)) for s in shapes]

        dtypes = [v.dtype for v in self._variables]

        def matvec(flat):
            parts = np.split(flat, np.cumsum(sizes)[:-1])
            product = hvp([keras.ops.convert_to_tensor(p.reshape(s).astype(d)) for p, s, d in zip(parts, shapes, dtypes)])
            return np.concatenate([h.ravel() for h in _to_numpy(product)])

        return matvec

    def _top(self, hvp, k, m, seed):
        start = np.random.default_rng(seed).standard_normal(self.num_parameters)
        alphas, betas = _lanczos(self._matvec(hvp), start, m)
        return np.sort(np.linalg.eigvalsh(_tridiagonal(alphas, betas)))[::-1][:k]


def rademacher_probes(variables, num_probes, seed=0):
    """`num_probes` lists of +-1 arrays shaped like `variables`, drawn on the
    host by NumPy's `default_rng(seed)` in variable order: the same probes
    on every backend for the same seed (the optimizers draw theirs inside
    the compiled step with the backend's generator, which differ)."""
    return [[keras.ops.convert_to_tensor(p) for p in z] for z in _numpy_probes(variables, num_probes, seed)]


def _numpy_probes(variables, num_probes, seed):
    """The probes of `rademacher_probes` as NumPy arrays, one probe per
    iteration (drawn when asked for)."""
    rng = np.random.default_rng(_validation.integer("seed", seed, low=0))
    for _ in range(num_probes):
        yield [(2 * rng.integers(0, 2, tuple(v.shape)) - 1).astype(v.dtype) for v in variables]


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
