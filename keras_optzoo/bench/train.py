"""Training runs. One `Trainer` per task x optimizer x regularization compiles
its model once and is reset (weights, optimizer state, learning rate) for
every learning rate and seed, so the train step is traced and compiled once,
not once per run.

A run is a dict with the curves per epoch (`train_loss`, `validation_loss`,
accuracies, `epoch_seconds`) and, once `evaluate_test` ran, the test metrics.
"""

import math
import time

import numpy as np

import keras
from keras_optzoo import with_curvature


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (Keras logs none)."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)


# Keras log key -> run key; every name says its split.
_CURVES = {"loss": "train_loss", "val_loss": "validation_loss", "accuracy": "train_accuracy_pct",
           "val_accuracy": "validation_accuracy_pct", "val_auc": "validation_auc"}


def _curve(key, values):
    values = [float(v) for v in values]
    return [100.0 * v for v in values] if key.endswith("_pct") else values


class Trainer:
    def __init__(self, task, spec, split, regularization="none", batch_size=None):
        self.task, self.spec, self.regularization = task, spec, regularization
        self.batch_size = batch_size or task.batch_size
        keras.utils.set_random_seed(0)
        model = task.build(split, regularization)
        self.optimizer = spec.make()
        self.model = with_curvature(model) if spec.second_order else model
        self.model.compile(optimizer=self.optimizer, loss=task.loss, metrics=task.metrics())
        # Built now, so that its initial state can be restored before every run.
        self.optimizer.build(self.model.trainable_variables)
        self._initial_state = {}
        self.optimizer.save_own_variables(self._initial_state)
        self._warm_up(split)

    def _warm_up(self, split):
        """One step and one evaluation, so that tracing and compiling happen
        here, and Keras's first `fit`, which draws a batch to build the model
        symbolically (moving NumPy's shuffling state), is not one of the runs."""
        n = self.batch_size_for(split)
        self.model.fit(split.x_train[:n], split.y_train[:n], batch_size=n, epochs=1, verbose=0)
        self.model.evaluate(split.x_val[:n], split.y_val[:n], batch_size=n, verbose=0)

    # -- state -------------------------------------------------------------------
    def start(self, split, seed, learning_rate):
        """Fresh weights for `seed` (a model built as the seed's first run would
        build it), the optimizer's initial state, and `learning_rate`."""
        keras.utils.set_random_seed(seed)
        self.model.set_weights(self.task.build(split, self.regularization).get_weights())
        self.optimizer.load_own_variables(self._initial_state)
        self.optimizer.learning_rate = learning_rate

    def snapshot(self):
        state = {}
        self.optimizer.save_own_variables(state)
        return self.model.get_weights(), state

    def restore(self, snapshot):
        weights, state = snapshot
        self.model.set_weights(weights)
        self.optimizer.load_own_variables(state)

    # -- training ----------------------------------------------------------------
    def batch_size_for(self, split):
        return len(split.x_train) if self.spec.full_batch else self.batch_size

    def fit(self, split, seed, epochs, initial_epoch=0, callbacks=()):
        """Trains from `initial_epoch` to `epochs`; returns the epochs' curves.
        A NaN loss ends the run (`keras.callbacks.TerminateOnNaN`)."""
        keras.utils.set_random_seed(1000 * seed + initial_epoch)
        timer = EpochTimer()
        batch_size = self.batch_size_for(split)
        history = self.model.fit(
            split.x_train, split.y_train, batch_size=batch_size, epochs=epochs, initial_epoch=initial_epoch,
            validation_data=(split.x_val, split.y_val), shuffle=True, verbose=0,
            callbacks=[timer, keras.callbacks.TerminateOnNaN(), *callbacks],
        )
        curves = {run_key: _curve(run_key, history.history.get(key, [])) for key, run_key in _CURVES.items()}
        curves["epoch_seconds"] = timer.times
        return curves

    def evaluate_test(self, split):
        values = self.model.evaluate(split.x_test, split.y_test, verbose=0, return_dict=True)
        out = {"test_loss": float(values["loss"]), "test_accuracy_pct": 100.0 * float(values["accuracy"])}
        if "auc" in values:
            out["test_auc"] = float(values["auc"])
        return out


def extend(curves, more):
    """`curves` followed by `more` (a resumed run)."""
    return {k: list(curves.get(k, [])) + list(more.get(k, [])) for k in set(curves) | set(more)}


def final_value(values):
    """The last value of a curve, +inf for a run that diverged (NaN or none)."""
    if not values or not math.isfinite(values[-1]):
        return math.inf
    return float(values[-1])


def steady_epoch_seconds(epoch_seconds):
    """The median epoch time, leaving out the first epoch when there are others
    (it includes tracing and compilation on a run that compiled)."""
    times = epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds
    return float(np.median(times)) if times else math.nan
