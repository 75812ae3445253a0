"""Training runs. One `Trainer` per task x optimizer x regularization compiles
its model once and is reset (weights, optimizer state, learning rate) for
every learning rate and seed, so the train step is traced and compiled once,
not once per run.

A run is a dict with the curves per epoch (`train_loss`, `validation_loss`,
accuracies, `epoch_seconds`, `train_seconds`, `steps`) and, once
`evaluate_test` ran, the test metrics.

The data of a split is either arrays (`x` and `y`, each an array or a
list/dict of arrays with the same number of samples) or a dataset that
batches itself (a `tf.data.Dataset`, `keras.utils.PyDataset` or torch
`DataLoader`, in `x` with `y` None).
"""

import math
import time

import numpy as np

import keras
from keras_optzoo import backend, with_curvature


class EpochTimer(keras.callbacks.Callback):
    """Per epoch: its wall time with the validation pass (`times`), the time
    of its training steps alone (`train_times`: from the epoch's start to its
    last step's end) and the number of steps (`steps`). Keras logs none."""

    def on_train_begin(self, logs=None):
        self.times, self.train_times, self.steps = [], [], []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._last = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()
        self._steps += 1

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)
        self.train_times.append(self._last - self._start)
        self.steps.append(self._steps)


def is_dataset(data):
    """Whether `data` batches itself: a tf.data.Dataset, keras.utils.PyDataset or torch DataLoader."""
    if isinstance(data, keras.utils.PyDataset):
        return True
    module, name = type(data).__module__, type(data).__name__
    return (module.startswith("tensorflow") and hasattr(data, "element_spec")) or (
        module.startswith("torch.utils.data") and name == "DataLoader")


def num_samples(x):
    """The number of samples in an array or a list/dict of arrays (None for a dataset)."""
    if x is None or is_dataset(x):
        return None
    return int(keras.tree.flatten(x)[0].shape[0])


def first_inputs(split):
    """The inputs of one validation sample (arrays) or of the first validation batch (a dataset)."""
    if split.y_val is not None:
        return head(split.x_val, 1)
    batch = split.x_val[0] if isinstance(split.x_val, keras.utils.PyDataset) else next(iter(split.x_val))
    return batch[0]


def head(x, n):
    """The first `n` samples of an array or a list/dict of arrays."""
    return keras.tree.map_structure(lambda a: a[:n], x)


def feed(x, y, batch_size, shuffle=False, seed=None):
    """`fit`'s data keywords for one split: a dataset as it is; two NumPy
    arrays through the backend's fast pipeline where it has one (TensorFlow:
    `backend.array_batches`, shuffled from `seed`); any other arrays as
    Keras takes them."""
    if y is None:
        return dict(x=x, shuffle=False)  # (Keras warns that it ignores its default shuffle=True)
    if backend.array_batches is not None and isinstance(x, np.ndarray) and isinstance(y, np.ndarray):
        return dict(x=backend.array_batches(x, y, batch_size, shuffle, seed), shuffle=False)
    return dict(x=x, y=y, batch_size=batch_size, shuffle=shuffle)


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
        self.model.compile(optimizer=self.optimizer, loss=task.loss, metrics=task.metrics(), **task.compile_kwargs)
        # One evaluation first builds a subclassed model's weights; then the
        # optimizer is built, so that its initial state can be restored before every run.
        self._evaluate_once(split)
        self.optimizer.build(self.model.trainable_variables)
        self._initial_state = {}
        self.optimizer.save_own_variables(self._initial_state)
        self._warm_up(split)

    def _evaluate_once(self, split):
        if split.y_val is None:
            self.model.evaluate(split.x_val, steps=1, verbose=0)
        else:
            n = self.batch_size_for(split) or 32
            self.model.evaluate(head(split.x_val, n), head(split.y_val, n), batch_size=n, verbose=0)

    def _warm_up(self, split):
        """One step, so that tracing and compiling happen here, and Keras's
        first `fit`, which draws a batch to build the model symbolically
        (moving NumPy's shuffling state), is not one of the runs."""
        if split.y_train is None:
            self.model.fit(split.x_train, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
        else:
            n = self.batch_size_for(split)
            self.model.fit(**feed(head(split.x_train, n), head(split.y_train, n), n), epochs=1, verbose=0)

    # -- state -------------------------------------------------------------------
    def start(self, split, seed, learning_rate):
        """Fresh weights for `seed` (a model built as the seed's first run would
        build it), the optimizer's initial state, and `learning_rate`."""
        keras.utils.set_random_seed(seed)
        fresh = self.task.build(split, self.regularization)
        if not fresh.weights:  # a subclassed model creates its weights at its first call
            fresh(first_inputs(split))
        self.model.set_weights(fresh.get_weights())
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
        """The batch size of `split`'s training data: None for a dataset (it batches itself)."""
        if split.y_train is None:
            return None
        return num_samples(split.x_train) if self.spec.full_batch else self.batch_size

    def fit(self, split, seed, epochs, initial_epoch=0, callbacks=()):
        """Trains from `initial_epoch` to `epochs`; returns the epochs' curves.
        A NaN loss ends the run (`keras.callbacks.TerminateOnNaN`)."""
        keras.utils.set_random_seed(1000 * seed + initial_epoch)
        timer = EpochTimer()
        batch_size = self.batch_size_for(split)
        data = feed(split.x_train, split.y_train, batch_size, shuffle=split.y_train is not None,
                    seed=1000 * seed + initial_epoch)
        validation = feed(split.x_val, split.y_val, batch_size)
        history = self.model.fit(
            **data, epochs=epochs, initial_epoch=initial_epoch, verbose=0,
            validation_data=(validation["x"], validation["y"]) if "y" in validation else validation["x"],
            callbacks=[timer, keras.callbacks.TerminateOnNaN(), *callbacks],
        )
        curves = {"train_loss": [], "validation_loss": []}  # also when a NaN stopped the first epoch
        for key, values in history.history.items():  # a user's task: every other loss and metric, by split
            run_key = _CURVES.get(key) or ("validation_" + key[4:] if key.startswith("val_") else "train_" + key)
            curves[run_key] = _curve(run_key, values)
        curves.update(epoch_seconds=timer.times, train_seconds=timer.train_times, steps=timer.steps)
        return curves

    def evaluate_test(self, split):
        """The test metrics ({} when the split has no test data): `test_loss`,
        `test_accuracy_pct` (a percentage), and `test_<name>` for any other."""
        if split.x_test is None:
            return {}
        data = dict(x=split.x_test) if split.y_test is None else dict(x=split.x_test, y=split.y_test)
        values = self.model.evaluate(**data, verbose=0, return_dict=True)
        return {("test_accuracy_pct" if k == "accuracy" else "test_" + k):
                (100.0 if k == "accuracy" else 1.0) * float(v) for k, v in values.items()}


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


def steady_step_seconds(run):
    """The steady time of one training step: the median over epochs (the first
    left out when there are others) of the epoch's training time over its
    steps, without the validation pass. Runs recorded before `train_seconds`
    existed fall back to the epoch time over `steps_per_epoch`."""
    if not run.get("train_seconds"):
        return steady_epoch_seconds(run["epoch_seconds"]) / run["steps_per_epoch"]
    per_step = [t / n for t, n in zip(run["train_seconds"], run["steps"]) if n]
    return steady_epoch_seconds(per_step)
