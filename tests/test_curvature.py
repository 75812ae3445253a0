"""The curvature engine against an independent float64 NumPy Hessian."""

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from keras_optzoo import curvature

L2 = 0.01


def _mlp():
    """3 -> 4 (tanh, L2 on the kernel) -> 3 softmax: 31 parameters."""
    keras.utils.set_random_seed(5)
    return keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(4, activation="tanh", kernel_regularizer=keras.regularizers.L2(L2)),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def _data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((16, 3)).astype("float32"), rng.integers(0, 3, 16).astype("int32")


def _numpy_loss_and_grad(theta, shapes, x, y):
    """Cross-entropy + L2 of the same MLP and its gradient, by hand, float64."""
    sizes = [int(np.prod(s)) for s in shapes]
    w1, b1, w2, b2 = (p.reshape(s) for p, s in zip(np.split(theta, np.cumsum(sizes)[:-1]), shapes))
    h = np.tanh(x @ w1 + b1)
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n = len(x)
    loss = -np.mean(np.log(p[np.arange(n), y])) + L2 * np.sum(w1**2)
    dz = p.copy()
    dz[np.arange(n), y] -= 1
    dz /= n
    gw2, gb2 = h.T @ dz, dz.sum(0)
    dh = (dz @ w2.T) * (1 - h**2)
    gw1, gb1 = x.T @ dh + 2 * L2 * w1, dh.sum(0)
    return loss, np.concatenate([g.ravel() for g in (gw1, gb1, gw2, gb2)])


def _exact_hessian(model, x, y):
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    theta = np.concatenate([keras.ops.convert_to_numpy(v).ravel() for v in model.trainable_variables]).astype("f8")
    x = x.astype("f8")
    n, eps = len(theta), 1e-5
    hess = np.zeros((n, n))
    for i in range(n):  # central differences of the analytic gradient
        e = np.zeros(n)
        e[i] = eps
        hess[:, i] = (_numpy_loss_and_grad(theta + e, shapes, x, y)[1] - _numpy_loss_and_grad(theta - e, shapes, x, y)[1]) / (2 * eps)
    return (hess + hess.T) / 2, shapes


def _flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])


def test_hvp_matches_exact_hessian_on_mlp_with_l2():
    model = _mlp()
    x, y = _data()
    hess, shapes = _exact_hessian(model, x, y)
    rng = np.random.default_rng(1)
    vectors = [[rng.standard_normal(s).astype("float32") for s in shapes] for _ in range(3)]
    for v, hv in zip(vectors, curvature.hvp(model, "sparse_categorical_crossentropy", x, y, vectors)):
        np.testing.assert_allclose(_flat(hv), hess @ _flat(v), rtol=1e-4, atol=1e-5)


def test_hvp_on_quadratic_is_a_times_v():
    """Dense(1, no bias) on the identity outputs w itself; loss 0.5 w^T A w has H = A."""
    rng = np.random.default_rng(2)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a = ((q * np.arange(1.0, 7.0)) @ q.T).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1, use_bias=False)])

    def loss_fn(y_true, w):
        return 0.5 * keras.ops.sum(w * keras.ops.matmul(keras.ops.convert_to_tensor(a), w))

    v = rng.standard_normal((6, 1)).astype("float32")
    (hv,) = curvature.hvp(model, loss_fn, np.eye(6, dtype="float32"), np.zeros((6, 1), "float32"), [v])
    np.testing.assert_allclose(hv, a @ v, rtol=1e-5, atol=1e-5)


def test_hutchinson_converges_to_exact_diagonal_and_trace():
    model = _mlp()
    x, y = _data()
    hess, _ = _exact_hessian(model, x, y)
    errors = []
    for probes in (4, 64, 1024):
        diag = _flat(curvature.hutchinson_diagonal(model, "sparse_categorical_crossentropy", x, y, num_probes=probes, seed=3))
        errors.append(np.linalg.norm(diag - np.diag(hess)) / np.linalg.norm(np.diag(hess)))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.15, errors
    trace = curvature.hutchinson_trace(model, "sparse_categorical_crossentropy", x, y, num_probes=1024, seed=4)
    # Rademacher probes: Var(z^T H z) = 2 sum_{i != j} H_ij^2 (closed form), so
    # the mean of 1024 lies within 4 standard deviations of tr(H).
    sigma = np.sqrt(2 * (np.sum(hess**2) - np.sum(np.diag(hess) ** 2)) / 1024)
    assert abs(trace - np.trace(hess)) < 4 * sigma, (trace, np.trace(hess), sigma)


def test_top_eigenvalues_match_eigvalsh():
    model = _mlp()
    x, y = _data()
    hess, _ = _exact_hessian(model, x, y)
    expected = np.sort(np.linalg.eigvalsh(hess))[::-1][:3]
    got = curvature.top_eigenvalues(model, "sparse_categorical_crossentropy", x, y, k=3)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-5)


def test_bad_inputs():
    model = _mlp()
    x, y = _data()
    with pytest.raises(ValueError, match="`loss` must reduce to a scalar"):
        curvature.hvp(model, keras.losses.SparseCategoricalCrossentropy(reduction=None), x, y,
                      [np.zeros(v.shape, "float32") for v in model.trainable_variables])  # fmt: skip
    with pytest.raises(ValueError, match="num_probes"):
        curvature.hutchinson_trace(model, "sparse_categorical_crossentropy", x, y, num_probes=0)
    with pytest.raises(ValueError, match="`k` must be"):
        curvature.top_eigenvalues(model, "sparse_categorical_crossentropy", x, y, k=0)
    with pytest.raises(TypeError, match="keras.Model"):
        kz.with_curvature("model")
