"""Shared helpers. The backend is whatever KERAS_BACKEND says (one per process;
`tests/run_all_backends.py` runs all three)."""

import numpy as np
import pytest

import keras

BACKEND = keras.backend.backend()


def slow_on(*backends):
    """The `slow` mark where this process's backend is one of `backends`
    (none elsewhere): for a parametrized case whose path a cheaper case
    covers on that backend."""
    return (pytest.mark.slow,) if BACKEND in backends else ()

# Shapes used by the parity tests: a scalar, vectors, a matrix and a 3-D tensor.
SHAPES = [(), (7,), (5, 3), (2, 3, 4)]


class PlainNormalization(keras.layers.Layer):
    """A BatchNormalization (training mode, `axis=0`: statistics of the batch)
    or LayerNormalization (`axis=-1`) written out in plain ops on the given
    layer's gamma and beta: no `ops.moments`, an independent reference for
    the second derivatives through the statistics."""

    def __init__(self, norm, axis):
        super().__init__()
        self.norm, self.axis, self.gamma, self.beta = norm, axis, norm.gamma, norm.beta

    def call(self, h):
        mean = keras.ops.mean(h, axis=self.axis, keepdims=True)
        variance = keras.ops.mean(keras.ops.square(h - mean), axis=self.axis, keepdims=True)
        return (h - mean) / keras.ops.sqrt(variance + self.norm.epsilon) * self.gamma + self.beta


def random_problem(steps, seed=0, shapes=SHAPES):
    """Initial values and a sequence of gradients, all float32."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s).astype("float32") for s in shapes]
    grads = [[rng.standard_normal(s).astype("float32") for s in shapes] for _ in range(steps)]
    return init, grads


def run_keras_optimizer(optimizer, init, grads, finalize=False):
    """Applies `grads` step by step with `optimizer.apply`; returns NumPy values."""
    variables = [keras.Variable(v) for v in init]
    for step in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step], variables)
    if finalize:
        optimizer.finalize_variable_values(variables)
    return [keras.ops.convert_to_numpy(v) for v in variables]


def run_torch_optimizer(make, init, grads):
    import torch

    params = [torch.nn.Parameter(torch.tensor(v)) for v in init]
    opt = make(params)
    for step in grads:
        for p, g in zip(params, step):
            p.grad = torch.tensor(g)
        opt.step()
    return [p.detach().numpy() for p in params]


def run_optax(transform, init, grads):
    import jax.numpy as jnp
    import optax

    params = [jnp.asarray(v) for v in init]
    state = transform.init(params)
    for step in grads:
        updates, state = transform.update([jnp.asarray(g) for g in step], state, params)
        params = optax.apply_updates(params, updates)
    return [np.asarray(p) for p in params]


def assert_all_close(actual, expected, rtol=1e-5, atol=1e-6):
    for i, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"tensor {i}")


@pytest.fixture(autouse=True)
def _seeded():
    # Not clear_session(): it runs gc.collect(), 0.4 s a test on torch.
    keras.utils.set_random_seed(1234)
    yield
