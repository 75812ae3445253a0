"""Each optimizer minimises a convex quadratic and trains a softmax regression
on the real MNIST files, below stated losses in a fixed number of steps."""

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from keras_optzoo.tasks import mnist

# name -> (constructor, quadratic lr, MNIST lr). Learning rates are each
# algorithm's usual scale for a problem with curvature in [1, 10] and for
# softmax regression on [0, 1] pixels.
OPTIMIZERS = {
    "sgd": (kz.SGD, 0.15, 0.5),
    "momentum": (kz.Momentum, 0.03, 0.1),
    "momentum_ema": (lambda lr: kz.Momentum(lr, form="ema"), 0.15, 0.5),
    "nesterov": (kz.Nesterov, 0.03, 0.1),
    "adagrad": (kz.Adagrad, 0.5, 0.1),
    "rmsprop": (kz.RMSprop, 0.005, 0.002),
    "adam": (kz.Adam, 0.05, 0.005),
    "amsgrad": (kz.AMSGrad, 0.05, 0.005),
    "adamw": (lambda lr: kz.AdamW(lr, weight_decay=1e-4), 0.05, 0.005),
}


def _quadratic(dim=20, seed=0):
    """f(x) = 0.5 x^T A x - b^T x, A SPD with eigenvalues in [1, 10], not diagonal."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    a = (q * np.linspace(1.0, 10.0, dim)) @ q.T
    b = rng.standard_normal(dim)
    x_star = np.linalg.solve(a, b)
    f_star = -0.5 * b @ x_star
    return a.astype("float32"), b.astype("float32"), f_star


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_minimises_convex_quadratic(name):
    make, lr, _ = OPTIMIZERS[name]
    a, b, f_star = _quadratic()
    x = keras.Variable(np.zeros(20, "float32"))
    opt = make(lr)
    a_t, b_t = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b)
    for _ in range(300):
        grad = keras.ops.subtract(keras.ops.matmul(a_t, x), b_t)
        opt.apply([grad], [x])
    xv = keras.ops.convert_to_numpy(x).astype("float64")
    gap = 0.5 * xv @ a @ xv - b @ xv - f_star
    # f(0) - f* is about 3.2 here; every optimizer gets 300 steps to reach 1e-3.
    assert gap < 1e-3, f"{name}: f(x) - f* = {gap:.3g} after 300 steps"


@pytest.fixture(scope="module")
def mnist_data():
    (x_train, y_train), (x_test, y_test) = mnist.load_embedded()
    return x_train[:4000], y_train[:4000], x_test, y_test


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_trains_mnist_logistic_regression(name, mnist_data):
    make, _, lr = OPTIMIZERS[name]
    x_train, y_train, x_test, y_test = mnist_data
    model = mnist.logistic_regression()
    model.compile(optimizer=make(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    initial_loss = model.evaluate(x_test, y_test, verbose=0)[0]
    model.fit(x_train, y_train, batch_size=64, epochs=2, shuffle=False, verbose=0)  # 126 steps
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    # ln(10) = 2.30 at the start; 126 steps of any of these reach < 0.55 / > 85 %.
    assert initial_loss > 2.0
    assert loss < 0.55, f"{name}: held-out loss {loss:.3f}"
    assert accuracy > 0.85, f"{name}: held-out accuracy {accuracy:.3f}"
