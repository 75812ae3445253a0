"""AdaptiveStopping: the seed-000 rule, recomputed independently from History."""

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from keras_optzoo.tasks import mnist


@pytest.fixture(scope="module")
def data():
    (x, y), _ = mnist.load_embedded()
    return x[:1500], y[:1500]


def _fit(data, callback, epochs=25, lr=0.1):
    keras.utils.set_random_seed(0)
    model = mnist.logistic_regression()
    model.compile(optimizer=kz.SGD(lr), loss="sparse_categorical_crossentropy")
    history = model.fit(*data, batch_size=100, epochs=epochs, shuffle=False, verbose=0, callbacks=[callback])
    return model, history


def _expected_stop(losses, threshold, window, patience, min_epochs):
    """The documented rule, transcribed."""
    below = 0
    for t in range(2 * window, len(losses) + 1):
        prev = np.mean(losses[t - 2 * window : t - window])
        gain = (prev - np.mean(losses[t - window : t])) / abs(prev)
        below = below + 1 if gain < threshold else 0
        if below > patience and t >= min_epochs:
            return t
    return None


@pytest.mark.parametrize("window, patience, threshold", [(1, 0, 0.03), (2, 1, 0.08)])
def test_stops_where_the_rule_says(data, window, patience, threshold):
    cb = kz.callbacks.AdaptiveStopping(threshold=threshold, window=window, patience=patience)
    _, history = _fit(data, cb)
    losses = history.history["loss"]
    expected = _expected_stop(losses, threshold, window, patience, 1)
    assert expected is not None and expected == len(losses) < 25
    assert cb.converged_epoch == expected == history.converged_epoch


def test_never_stops_before_min_epochs(data):
    cb = kz.callbacks.AdaptiveStopping(threshold=0.5, min_epochs=6)
    _, history = _fit(data, cb)
    assert len(history.history["loss"]) == 6 and cb.converged_epoch == 6


def test_restore_best_weights_restores_the_best_epoch(data):
    # mode="max" on a falling loss: the best epoch is the first, not the last,
    # and the rule (threshold 0, patience 2) stops at epoch 4.
    weights = {}

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights[epoch] = self.model.get_weights()

    cb = kz.callbacks.AdaptiveStopping(threshold=0.0, patience=2, mode="max", restore_best_weights=True)
    keras.utils.set_random_seed(0)
    model = mnist.logistic_regression()
    model.compile(optimizer=kz.SGD(0.1), loss="sparse_categorical_crossentropy")
    history = model.fit(*data, batch_size=100, epochs=12, shuffle=False, verbose=0, callbacks=[Snapshot(), cb])
    losses = history.history["loss"]
    assert len(losses) == 4 and int(np.argmax(losses)) == 0
    for a, b in zip(model.get_weights(), weights[0]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights[0][0], weights[3][0])


def test_per_batch_checking_and_val_loss(data):
    cb = kz.callbacks.AdaptiveStopping(threshold=0.05, check="batch", window=3)
    _, history = _fit(data, cb, epochs=5)
    assert cb.converged_epoch is not None and len(cb.values) > 5
    cb = kz.callbacks.AdaptiveStopping(monitor="val_loss", threshold=0.01)
    keras.utils.set_random_seed(0)
    model = mnist.logistic_regression()
    model.compile(optimizer=kz.SGD(0.1), loss="sparse_categorical_crossentropy")
    x, y = data
    history = model.fit(x[:1000], y[:1000], validation_data=(x[1000:], y[1000:]), epochs=20,
                        batch_size=100, verbose=0, callbacks=[cb])
    assert cb.converged_epoch == _expected_stop(history.history["val_loss"], 0.01, 1, 0, 1)


def test_unknown_monitor_warns_with_available_keys(data):
    with pytest.warns(UserWarning, match="val_loss.*Available metrics are: loss"):
        _fit(data, kz.callbacks.AdaptiveStopping(monitor="val_loss"), epochs=2)


@pytest.mark.parametrize(
    "kwargs, word",
    [({"threshold": -1e-3}, "threshold"), ({"patience": -1}, "patience"), ({"window": 0}, "window"),
     ({"min_epochs": 0}, "min_epochs"), ({"check": "step"}, "check"), ({"mode": "down"}, "mode")],
)
def test_bad_arguments(kwargs, word):
    with pytest.raises((ValueError, TypeError), match=word):
        kz.callbacks.AdaptiveStopping(**kwargs)
