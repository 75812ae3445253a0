"""`keras_compat=True` gives the Keras built-in's numbers for a migrated
recipe (README, "Coming from keras.optimizers"), checked with `model.fit` on
an Embedding model whose rarely-hit rows get gradients near epsilon, where
epsilon's placement decides the step; the default arithmetic is shown to
differ there, so the comparison can tell the two apart."""

import numpy as np
import pytest

import keras
import keras_optzoo as kz

VOCAB, LENGTH, N = 300, 6, 96


def _data():
    rng = np.random.default_rng(0)
    # Zipf-distributed tokens: a few frequent rows, many hit once or twice.
    tokens = (rng.zipf(1.4, size=(N, LENGTH)) - 1) % VOCAB
    labels = (tokens % 2).mean(axis=1) > 0.5
    return tokens.astype("int32"), labels.astype("float32")


def _embedding_model():
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((LENGTH,), dtype="int32"),
        keras.layers.Embedding(VOCAB, 8),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(1, activation="sigmoid"),
    ])


def _train(optimizer, epochs=2):
    x, y = _data()
    model = _embedding_model()
    model.compile(optimizer=optimizer, loss="binary_crossentropy")
    model.fit(x, y, batch_size=32, epochs=epochs, shuffle=False, verbose=0)
    return [np.asarray(w) for w in model.get_weights()]


LR = 1e-2
# (ours in Keras mode, the Keras built-in, ours with its default arithmetic)
PAIRS = {
    "Adam": (lambda: kz.Adam(LR, keras_compat=True), lambda: keras.optimizers.Adam(LR), lambda: kz.Adam(LR)),
    "AMSGrad": (lambda: kz.AMSGrad(LR, keras_compat=True), lambda: keras.optimizers.Adam(LR, amsgrad=True),
                lambda: kz.AMSGrad(LR)),
    "AdamW": (lambda: kz.AdamW(LR, keras_compat=True), lambda: keras.optimizers.AdamW(LR), lambda: kz.AdamW(LR)),
    "Adagrad": (lambda: kz.Adagrad(LR, keras_compat=True), lambda: keras.optimizers.Adagrad(LR),
                lambda: kz.Adagrad(LR)),
    "RMSprop": (lambda: kz.RMSprop(LR, keras_compat=True), lambda: keras.optimizers.RMSprop(LR),
                lambda: kz.RMSprop(LR)),
}  # fmt: skip


@pytest.mark.parametrize("name", PAIRS)
def test_keras_compat_equals_the_keras_builtin_on_an_embedding_model(name):
    ours, builtin, default = (make() for make in PAIRS[name])
    expected = _train(builtin)
    for i, (a, e) in enumerate(zip(_train(ours), expected)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6, err_msg=f"{name}, weight {i}")
    # The default arithmetic moves the same weights measurably differently
    # (far above float32 rounding), so the check above is not vacuous.
    gap = max(np.max(np.abs(a - e)) for a, e in zip(_train(default), expected))
    assert gap > 1e-4, f"{name}: default differs from Keras by only {gap:.2e}"


@pytest.mark.parametrize("cls", [kz.Adam, kz.AMSGrad, kz.AdamW, kz.Adagrad, kz.RMSprop], ids=lambda c: c.__name__)
def test_keras_compat_round_trips_and_turns_off_the_fused_kernel(cls):
    opt = cls(keras_compat=True)
    config = opt.get_config()
    assert config["keras_compat"] is True
    again = cls.from_config(config)
    assert again.keras_compat is True and again.get_config() == config
    assert opt._fused_spec() is None and cls()._fused_spec() is not None
    assert cls().get_config()["keras_compat"] is False


def test_adagrad_keras_compat_takes_kerass_defaults_unless_given():
    assert kz.Adagrad().initial_accumulator_value == 0.0
    assert kz.Adagrad(keras_compat=True).initial_accumulator_value == 0.1
    assert kz.Adagrad(keras_compat=True, initial_accumulator_value=0.0).initial_accumulator_value == 0.0
    assert float(kz.Adagrad().learning_rate) == pytest.approx(0.01)
    assert float(kz.Adagrad(keras_compat=True, learning_rate=0.05).learning_rate) == pytest.approx(0.05)


def test_adagrad_with_no_arguments_but_keras_compat_is_keras_adagrad():
    """Keras's defaults differ (lr 0.001, accumulator 0.1): keras_compat=True
    alone must give `keras.optimizers.Adagrad()`'s steps."""
    expected = _train(keras.optimizers.Adagrad())
    for i, (a, e) in enumerate(zip(_train(kz.Adagrad(keras_compat=True)), expected)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6, err_msg=f"weight {i}")


@pytest.mark.parametrize("value", [1, "yes", None, 0.0])
@pytest.mark.parametrize("cls", [kz.Adam, kz.Adagrad, kz.RMSprop], ids=lambda c: c.__name__)
def test_keras_compat_must_be_a_bool(cls, value):
    with pytest.raises(TypeError, match="keras_compat.*True or False"):
        cls(keras_compat=value)
