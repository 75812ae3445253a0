"""`with_curvature(model)` behaves as `model` for every way Keras compiles
and fits a model: list and dict outputs, list and dict losses and metrics,
`loss_weights`, per-output `sample_weight`; the same log names and values.
A model that overrides `train_step` is refused, naming the alternative."""

import warnings

import numpy as np
import pytest

import keras
import keras_optzoo as kz


def _list_model():
    keras.utils.set_random_seed(0)
    i = keras.Input((4,))
    h = keras.layers.Dense(5, activation="tanh", name="shared")(i)
    return keras.Model(i, [keras.layers.Dense(3, activation="softmax", name="cls")(h), keras.layers.Dense(1, name="reg")(h)])


def _dict_model():
    keras.utils.set_random_seed(0)
    i = keras.Input((4,))
    h = keras.layers.Dense(5, activation="tanh", name="shared")(i)
    return keras.Model(i, {"cls": keras.layers.Dense(3, activation="softmax", name="cls")(h),
                           "reg": keras.layers.Dense(1, name="reg")(h)})


def _data():
    rng = np.random.default_rng(0)
    x = rng.random((64, 4)).astype("float32")
    y = {"cls": rng.integers(0, 3, 64).astype("int32"), "reg": rng.random((64, 1)).astype("float32")}
    weights = {"cls": rng.random(64).astype("float32"), "reg": rng.random(64).astype("float32")}
    return x, y, weights


LOSSES = {"cls": "sparse_categorical_crossentropy", "reg": "mse"}
# (model, compile arguments, y and sample_weight as dicts or lists)
CASES = {
    "list outputs, dict losses and metrics": (
        _list_model, dict(loss=LOSSES, metrics={"cls": "accuracy", "reg": "mae"}), "list"),
    "list outputs, list losses and metrics, loss_weights": (
        _list_model, dict(loss=[LOSSES["cls"], LOSSES["reg"]], metrics=[["accuracy"], ["mae"]], loss_weights=[1.0, 0.3]),
        "list"),
    "list outputs, the same loss twice": (
        _list_model, dict(loss=["mse", "mse"], metrics=[["mae"], ["mae"]]), "list_float"),
    "dict outputs, dict losses, loss_weights, weighted metrics": (
        _dict_model, dict(loss=LOSSES, loss_weights={"cls": 2.0, "reg": 0.5}, metrics={"cls": ["accuracy"]},
                          weighted_metrics={"reg": ["mae"]}), "dict"),
}


def _fit(model, arguments, layout, optimizer):
    x, y, weights = _data()
    if layout == "list_float":
        y = {"cls": y["cls"][:, None].astype("float32") * np.ones((1, 3), "float32"), "reg": y["reg"]}
    if layout != "dict":
        y, weights = [y["cls"], y["reg"]], [weights["cls"], weights["reg"]]
    model.compile(optimizer=optimizer, **arguments)
    return model.fit(x, y, sample_weight=weights, batch_size=16, epochs=2, shuffle=False, verbose=0).history


@pytest.mark.parametrize("case", list(CASES))
def test_logs_equal_the_unwrapped_model_first_order(case):
    make, arguments, layout = CASES[case]
    plain = _fit(make(), arguments, layout, keras.optimizers.Adam(0.01))
    wrapped = _fit(kz.with_curvature(make()), arguments, layout, keras.optimizers.Adam(0.01))
    assert sorted(wrapped) == sorted(plain)
    for key in plain:
        np.testing.assert_allclose(wrapped[key], plain[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("second_order", ["Hybrid", "SophiaH", "Newton-CG"])
def test_logs_equal_the_unwrapped_model_second_order_at_lr_zero(case, second_order):
    """At learning rate 0 nothing moves, so the losses and metrics of every
    epoch must equal the plain model's (SGD at lr 0): the curvature train
    step computes and names them as Keras does."""
    make, arguments, layout = CASES[case]
    optimizer = {"Hybrid": lambda: kz.Hybrid(0.0), "SophiaH": lambda: kz.SophiaH(0.0, hessian_update_interval=1),
                 "Newton-CG": lambda: kz.Newton(0.0, method="cg", cg_iterations=2)}[second_order]()
    plain = _fit(make(), arguments, layout, keras.optimizers.SGD(0.0))
    wrapped = _fit(kz.with_curvature(make()), arguments, layout, optimizer)
    assert sorted(wrapped) == sorted(plain)
    for key in plain:
        np.testing.assert_allclose(wrapped[key], plain[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_issue_example_trains_with_a_second_order_optimizer():
    i = keras.Input((4,))
    m = kz.with_curvature(keras.Model(i, [keras.layers.Dense(3, activation="softmax", name="cls")(i),
                                          keras.layers.Dense(1, name="reg")(i)]))
    m.compile(optimizer=kz.Hybrid(), loss={"cls": "sparse_categorical_crossentropy", "reg": "mse"})
    history = m.fit(np.random.rand(64, 4).astype("float32"),
                    {"cls": np.zeros(64, "int32"), "reg": np.zeros((64, 1), "float32")}, verbose=0).history
    assert {"loss", "cls_loss", "reg_loss"} <= set(history)


class _SurgeryModel(keras.Model):
    """A model with its own train step (gradient surgery, an extra log)."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)

    def train_step(self, *args, **kwargs):  # pragma: no cover - never reached through with_curvature
        return super().train_step(*args, **kwargs)


def test_an_overridden_train_step_is_refused_naming_the_alternative():
    with pytest.raises(TypeError, match=r"_SurgeryModel.*overrides `train_step`.*set_curvature"):
        kz.with_curvature(_SurgeryModel())


@pytest.mark.parametrize("order", ["compile_then_wrap", "wrap_then_compile"])
def test_a_saved_wrapper_resumes_exactly_whichever_was_compiled_first(order, tmp_path):
    """with_curvature of a compiled model trains that model's optimizer; the
    .keras file stores its state once (under the inner model). Loading gives
    back one shared optimizer at step 2 with no skipped variables, and two
    more steps of the loaded model equal two more of the original (the
    loaded model was 0.014-0.032 off, at step 0, before)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 6)).astype("float32"), rng.integers(0, 3, 64)
    keras.utils.set_random_seed(1)
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    if order == "compile_then_wrap":
        inner.compile(optimizer=kz.AdaHessian(warmup_steps=7), loss="sparse_categorical_crossentropy")
        model = kz.with_curvature(inner)
    else:
        model = kz.with_curvature(inner)
        model.compile(optimizer=kz.AdaHessian(warmup_steps=7), loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(tmp_path / "m.keras")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    assert int(keras.ops.convert_to_numpy(loaded.optimizer.iterations)) == 2
    assert (loaded.optimizer is getattr(loaded.model, "optimizer", None)) == (order == "compile_then_wrap")
    for m in (model, loaded):
        m.fit(x, y, batch_size=32, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_an_embedding_model_trains_through_partial_batches_with_probes_every_step():
    """Batches of 16 and a last one of 8: TensorFlow retraces the step with an
    unknown batch size, where an Embedding's gradient (IndexedSlices made
    dense) lost its static shape and the Rademacher probes could not be drawn."""
    keras.utils.set_random_seed(0)
    model = kz.with_curvature(keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(9, 4),
                                                keras.layers.Dense(3, activation="softmax")]))  # per token
    model.compile(optimizer=kz.optimizers.SophiaH(learning_rate=0.01, hessian_update_interval=1),
                  loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 9, (40, 5)).astype("int32"), rng.integers(0, 3, (40, 5)).astype("int32")
    for n in (32, 40):  # a full-batch shape first, then a partial last batch
        losses = model.fit(x[:n], y[:n], batch_size=16, epochs=2, verbose=0).history["loss"]
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
