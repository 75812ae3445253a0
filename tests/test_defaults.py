"""Defaults judged the way a user judges them: `Optimizer()` with no arguments
on a standard model against `keras.optimizers.Adam()` from the same weights,
on real MNIST, on every backend. (The CNN half of the claim is in the
benchmark, docs/defaults.md: too slow for the test suite.)"""

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from keras_optzoo.tasks import mnist

STEPS = dict(batch_size=64, epochs=3, shuffle=True, verbose=0)


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = mnist.load_embedded()
    return x[:1024], y[:1024]


def _train(make_optimizer, digits):
    x, y = digits
    keras.utils.set_random_seed(0)
    model = kz.with_curvature(mnist.mlp("relu"))
    model.compile(optimizer=make_optimizer(), loss=mnist.LOSS, metrics=["accuracy"])
    history = model.fit(x, y, **STEPS).history
    return history["loss"][-1], history["accuracy"][-1]


@pytest.fixture(scope="module")
def adam_loss(digits):
    return _train(keras.optimizers.Adam, digits)[0]


@pytest.mark.parametrize("cls", [kz.Hybrid, kz.AdaHessian, kz.SophiaH, kz.SophiaG], ids=lambda c: c.__name__)
def test_default_trains_at_least_as_well_as_adam(cls, digits, adam_loss):
    loss, _ = _train(cls, digits)
    assert np.isfinite(loss) and loss <= adam_loss, (cls.__name__, loss, adam_loss)


@pytest.mark.parametrize("method", ["diagonal", "cg"])
def test_default_newton_does_not_diverge(method, digits):
    loss, accuracy = _train(lambda: kz.Newton(method=method), digits)
    assert np.isfinite(loss) and accuracy >= 0.85, (method, loss, accuracy)
