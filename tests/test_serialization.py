"""get_config/from_config round trips, `get`, and `.keras` files that load
back with their optimizer (state included) without custom_objects."""

import copy

import numpy as np
import pytest

import keras
import keras_optzoo as kz

CONFIGURED = {
    "SGD": lambda: kz.SGD(0.03, clipnorm=1.0),
    "Momentum": lambda: kz.Momentum(0.02, momentum=0.8, form="ema", weight_decay=0.01),
    "Nesterov": lambda: kz.Nesterov(0.02, momentum=0.7, global_clipnorm=2.0),
    "Adagrad": lambda: kz.Adagrad(0.1, initial_accumulator_value=0.2, epsilon=1e-6),
    "RMSprop": lambda: kz.RMSprop(0.002, rho=0.8, epsilon=1e-5),
    "Adam": lambda: kz.Adam(
        keras.optimizers.schedules.CosineDecay(0.01, 100), beta_1=0.8, beta_2=0.99
    ),
    "AMSGrad": lambda: kz.AMSGrad(0.003, epsilon=1e-6, gradient_accumulation_steps=2),
    "AdamW": lambda: kz.AdamW(0.004, weight_decay=0.02, clipvalue=0.5),
}


# Second-order optimizers: config round trips here; `.keras` files with their
# state are tested through with_curvature in test_second_order.py.
SECOND_ORDER = {
    "Newton": lambda: kz.Newton(0.5, method="cg", damping=0.1, cg_iterations=4),
    "Hybrid": lambda: kz.Hybrid(0.002, beta_3=0.9, l2=1e-4, hessian_update_interval=3, num_probes=2, seed=5),
    "AdaHessian": lambda: kz.AdaHessian(0.1, hessian_power=0.5, weight_decay=1e-4),
    "SophiaH": lambda: kz.SophiaH(3e-4, gamma=0.05, hessian_update_interval=7),
    "SophiaG": lambda: kz.SophiaG(3e-4, gamma=0.1, hessian_update_interval=4, seed=3),
}


def _comparable(config):
    return {k: v for k, v in config.items() if k != "name"}


@pytest.mark.parametrize("name", sorted(CONFIGURED) + sorted(SECOND_ORDER))
def test_get_config_round_trip(name):
    opt = {**CONFIGURED, **SECOND_ORDER}[name]()
    config = opt.get_config()
    clone = type(opt).from_config(copy.deepcopy(config))
    assert type(clone) is type(opt)
    assert _comparable(clone.get_config()) == _comparable(config)
    # and through Keras's generic (de)serialisation, by registered name
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert type(again) is type(opt)
    assert _comparable(again.get_config()) == _comparable(opt.get_config())
    # use_ema is left out of the `.keras` resume test below: Keras's fit()
    # writes the EMA into the weights when it ends, so a split run differs from
    # a straight one by design. Its configuration still round-trips:
    with_ema = dict(copy.deepcopy(config), use_ema=True, ema_momentum=0.9)
    assert type(opt).from_config(copy.deepcopy(with_ema)).get_config()["ema_momentum"] == 0.9


@pytest.mark.parametrize("name", sorted(CONFIGURED) + sorted(SECOND_ORDER))
def test_get_accepts_names_configs_and_instances(name):
    opt = {**CONFIGURED, **SECOND_ORDER}[name]()
    assert kz.get(opt) is opt
    assert type(kz.get(name.lower())) is type(opt)
    from_dict = kz.get({"class_name": name, "config": copy.deepcopy(opt.get_config())})
    assert type(from_dict) is type(opt)
    assert _comparable(from_dict.get_config()) == _comparable(opt.get_config())


def test_get_aliases_and_unknown_names():
    assert type(kz.get("GD")) is kz.SGD
    assert type(kz.get("mini-batch")) is kz.SGD
    assert type(kz.get("NAG")) is kz.Nesterov
    with pytest.raises(ValueError, match="Unknown optimizer 'adamax'.*amsgrad"):
        kz.get("adamax")
    with pytest.raises(TypeError, match="identifier"):
        kz.get(3)


def _model():
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(1)]
    )


@pytest.mark.parametrize("name", sorted(CONFIGURED))
def test_keras_file_round_trip_resumes_exactly(name, tmp_path):
    """Train, save, load (no custom_objects), train more == uninterrupted run."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype("float32")
    y = rng.standard_normal((64, 1)).astype("float32")

    keras.utils.set_random_seed(7)
    straight = _model()
    straight.compile(optimizer=CONFIGURED[name](), loss="mse")
    straight.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)

    keras.utils.set_random_seed(7)
    first = _model()
    first.compile(optimizer=CONFIGURED[name](), loss="mse")
    first.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    path = tmp_path / "model.keras"
    first.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is type(first.optimizer)
    assert int(keras.ops.convert_to_numpy(loaded.optimizer._iterations)) == 4  # batches seen
    for a, b in zip(loaded.optimizer.variables, first.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    loaded.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    for a, b in zip(loaded.get_weights(), straight.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_second_order_keras_file_round_trip_resumes_exactly(name, tmp_path):
    """The same for the second-order optimizers through with_curvature; the
    refresh interval 3 makes the resumed run cross a refresh, so the curvature
    slots and the refresh count must come back too."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 6)).astype("float32")
    y = rng.standard_normal((64, 1)).astype("float32")
    configs = {
        "Newton": lambda: kz.Newton(0.1, damping=1.0, hessian_update_interval=3),
        "Hybrid": lambda: kz.Hybrid(0.01, hessian_update_interval=3, num_probes=2, seed=5),
        "AdaHessian": lambda: kz.AdaHessian(0.05, hessian_update_interval=3),
        "SophiaH": lambda: kz.SophiaH(0.01, hessian_update_interval=3),
        "SophiaG": lambda: kz.SophiaG(0.01, hessian_update_interval=3),
    }
    loss = "mse"
    if name == "SophiaG":  # samples labels: a classification loss
        loss, y = keras.losses.BinaryCrossentropy(from_logits=True), (y > 0).astype("float32")

    def build():
        keras.utils.set_random_seed(7)
        model = kz.with_curvature(_model())
        model.compile(optimizer=configs[name](), loss=loss)
        return model

    straight = build()
    straight.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    first = build()
    first.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    first.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded.optimizer) is type(first.optimizer)
    for a, b in zip(loaded.optimizer.variables, first.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    loaded.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_weights() + [np.asarray(v) for v in loaded.optimizer.variables],
                    straight.get_weights() + [np.asarray(v) for v in straight.optimizer.variables]):  # fmt: skip
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
