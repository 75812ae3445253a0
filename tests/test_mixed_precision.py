"""Mixed precision: every optimizer trains under 'mixed_float16' (inside the
LossScaleOptimizer Keras wraps it in) and 'mixed_bfloat16' with its state in
float32; float16 variables work (SGD family) or fail with a clear error; a
LossScaleOptimizer around ours saves to and loads from `.keras`."""

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from keras_optzoo.tasks import mnist

ALL = [(cls.__name__, cls) for cls in kz.optimizers.ALL_OPTIMIZERS]
FLOAT16_OK = {kz.SGD, kz.Momentum, kz.Nesterov}
# Learning rates (and Newton's damping) that train this MLP in a few steps.
CONFIG = {
    kz.SGD: {"learning_rate": 0.1},
    kz.Momentum: {"learning_rate": 0.05},
    kz.Nesterov: {"learning_rate": 0.05},
    kz.Adagrad: {"learning_rate": 0.003},
    kz.SophiaH: {"learning_rate": 0.01},
    kz.SophiaG: {"learning_rate": 0.01},
    kz.AdaHessian: {"learning_rate": 0.02},
    kz.Newton: {"learning_rate": 0.05, "damping": 1.0},
}


@pytest.fixture
def data():
    (x, y), _ = mnist.load_embedded(n_train=256)
    return x, y


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_dtype_policy(request.param)
    yield request.param
    keras.mixed_precision.set_dtype_policy("float32")


def _compiled(cls, **overrides):
    model = mnist.mlp(hidden_activation="relu")
    opt = cls(**{**CONFIG.get(cls, {}), **overrides})
    if cls in kz.optimizers.SECOND_ORDER:
        model = kz.with_curvature(model)
    model.compile(optimizer=opt, loss=mnist.LOSS)
    return model, opt


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("name, cls", ALL, ids=[n for n, _ in ALL])
def test_mixed_policy_trains_with_float32_state(policy, name, cls, data):
    x, y = data
    keras.utils.set_random_seed(0)
    model, opt = _compiled(cls)
    if policy == "mixed_float16":  # Keras wraps the optimizer for loss scaling
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.optimizer.inner_optimizer is opt
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < 0.95 * before, (before, after)
    assert model.layers[-1].compute_dtype != "float32"  # it really ran in 16 bits
    floats = {keras.backend.standardize_dtype(v.dtype) for v in opt.variables if "int" not in str(v.dtype)}
    assert floats == {"float32"}, floats


@pytest.mark.parametrize("policy", ["float16"], indirect=True)
@pytest.mark.parametrize("name, cls", ALL, ids=[n for n, _ in ALL])
def test_float16_variables_train_or_raise_a_clear_error(policy, name, cls, data):
    x, y = data
    keras.utils.set_random_seed(0)
    # float16 weights round away steps below their ulp: a larger step here.
    model, opt = _compiled(cls, learning_rate=0.3) if cls in FLOAT16_OK else _compiled(cls)
    if cls in FLOAT16_OK:
        before = model.evaluate(x, y, verbose=0)
        model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
        after = model.evaluate(x, y, verbose=0)
        # A real drop: torch's fused momentum kernel once left float16 weights
        # unchanged and the loss moved 2.29 -> 2.27 (the keras.ops code: 0.32).
        assert np.isfinite(after) and after < 0.8 * before, (before, after)
    else:
        with pytest.raises(TypeError, match="float16 variables.*mixed_float16"):
            model.fit(x, y, batch_size=64, epochs=1, verbose=0)


@pytest.mark.parametrize("cls", [kz.Adam, kz.Momentum, kz.Hybrid], ids=lambda c: c.__name__)
def test_loss_scale_optimizer_around_ours_loads_from_keras_file_and_resumes(cls, tmp_path, data):
    """LossScaleOptimizer serializes its inner optimizer: ours must load back
    from `.keras` (no custom_objects) with its state, and resume exactly."""
    x, y = data
    x, y = x[:128], y[:128]

    def build():
        keras.utils.set_random_seed(0)
        model = mnist.mlp(hidden_activation="relu")
        if cls in kz.optimizers.SECOND_ORDER:
            model = kz.with_curvature(model)
        model.compile(optimizer=keras.optimizers.LossScaleOptimizer(cls(), initial_scale=2.0**8), loss=mnist.LOSS)
        return model

    straight = build()
    straight.fit(x, y, batch_size=32, epochs=2, shuffle=False, verbose=0)
    first = build()
    first.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    assert type(loaded.optimizer.inner_optimizer) is cls
    for a, b in zip(loaded.optimizer.variables, first.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    loaded.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
