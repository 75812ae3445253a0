"""The optimizers work through every way Keras trains: compile/fit (with XLA
on TensorFlow and JAX), JAX's stateless_apply, and hand-written loops. Each
run is compared with the Keras built-in running the same algorithm."""

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from conftest import BACKEND

# Whole training runs against the Keras built-ins: the fused kernels round
# differently from Keras's op-by-op code (each closer to a float64 reference,
# see test_parity), and training feeds that back through the gradients:
# up to 2e-6 apart after 3 epochs of Adam/AMSGrad/AdamW.
TRAIN_ATOL = 5e-6

PAIRS = {
    "momentum": (lambda: kz.Momentum(0.05), lambda: keras.optimizers.SGD(0.05, momentum=0.9)),
    "nesterov": (
        lambda: kz.Nesterov(0.05),
        lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    ),
    "adam": (
        lambda: kz.Adam(0.01, epsilon=1e-10),
        lambda: keras.optimizers.Adam(0.01, epsilon=1e-10),
    ),
    "amsgrad": (
        lambda: kz.AMSGrad(0.01, epsilon=1e-10),
        lambda: keras.optimizers.Adam(0.01, epsilon=1e-10, amsgrad=True),
    ),
    "adamw": (
        lambda: kz.AdamW(0.01, weight_decay=0.1, epsilon=1e-10),
        lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1, epsilon=1e-10),
    ),
}
JIT = [False] + ([True] if BACKEND in ("tensorflow", "jax") else [])


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((96, 8)).astype("float32")
    y = (x @ rng.standard_normal((8, 3)) > 0).astype("float32")
    return x, y


def _model(seed=3):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="sigmoid"),
        ]
    )


def _fit(optimizer, jit_compile):
    x, y = _data()
    model = _model()
    model.compile(optimizer=optimizer, loss="binary_crossentropy", jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return model.get_weights(), history.history["loss"]


@pytest.mark.parametrize("jit_compile", JIT)
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_compile_fit_matches_builtin(name, jit_compile):
    ours, builtin = PAIRS[name]
    weights, losses = _fit(ours(), jit_compile)
    ref_weights, _ = _fit(builtin(), jit_compile)
    assert losses[-1] < losses[0]
    for a, b in zip(weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=TRAIN_ATOL)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_stateless_apply_matches_apply(name):
    """`stateless_apply` (JAX's functional path) gives what `apply` gives."""
    if BACKEND == "tensorflow":
        pytest.skip("Keras's TensorFlow backend refuses stateless_apply (tf.distribute)")
    ours, builtin = PAIRS[name]
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s).astype("float32") for s in [(4, 3), (3,)]]
    grads = [[rng.standard_normal(v.shape).astype("float32") for v in init] for _ in range(5)]

    opt = ours()
    variables = [keras.Variable(v) for v in init]
    opt.build(variables)
    opt_vars = [v.value for v in opt.variables]
    values = [v.value for v in variables]
    for step in grads:
        values, opt_vars = opt.stateless_apply(opt_vars, [keras.ops.convert_to_tensor(g) for g in step], values)

    ref = builtin()
    ref_vars = [keras.Variable(v) for v in init]
    for step in grads:
        ref.apply([keras.ops.convert_to_tensor(g) for g in step], ref_vars)
    for a, b in zip(values, ref_vars):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=TRAIN_ATOL)


def _custom_loop(optimizer, steps=6):
    """A hand-written training loop in each backend's own autodiff."""
    x, y = _data()
    model = _model()
    loss_fn = keras.losses.BinaryCrossentropy()
    model.build((None, 8))
    optimizer.build(model.trainable_variables)
    for i in range(steps):
        xb, yb = x[16 * i : 16 * (i + 1)], y[16 * i : 16 * (i + 1)]
        if BACKEND == "tensorflow":
            import tensorflow as tf

            with tf.GradientTape() as tape:
                loss = loss_fn(yb, model(xb, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
        elif BACKEND == "jax":
            import jax

            def compute_loss(trainable, non_trainable):
                pred, _ = model.stateless_call(trainable, non_trainable, xb, training=True)
                return loss_fn(yb, pred)

            trainable = [v.value for v in model.trainable_variables]
            non_trainable = [v.value for v in model.non_trainable_variables]
            grads = jax.grad(compute_loss)(trainable, non_trainable)
            opt_vars = [v.value for v in optimizer.variables]
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            for var, value in zip(model.trainable_variables, trainable):
                var.assign(value)
            for var, value in zip(optimizer.variables, opt_vars):
                var.assign(value)
        else:
            import torch

            model.zero_grad()
            loss = loss_fn(yb, model(xb, training=True))
            loss.backward()
            grads = [v.value.grad for v in model.trainable_variables]
            with torch.no_grad():
                optimizer.apply(grads, model.trainable_variables)
    return model.get_weights()


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_custom_training_loop_matches_builtin(name):
    ours, builtin = PAIRS[name]
    for a, b in zip(_custom_loop(ours()), _custom_loop(builtin())):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=TRAIN_ATOL)
