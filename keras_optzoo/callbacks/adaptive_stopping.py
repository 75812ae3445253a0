"""Seed 000's adaptive stopping rule, made precise, on Keras's EarlyStopping."""

import numpy as np

import keras

from keras_optzoo import _keras_compat as compat
from keras_optzoo import _validation


class AdaptiveStopping(keras.callbacks.EarlyStopping):
    """Stops training when the improvement of the loss between checks falls
    below a threshold (seed 000, section 5.4).

    At each check t (end of an epoch, or of a batch with `check="batch"`) the
    monitored value x_t is recorded. With window w, the improvement is

        d_t = mean(x_{t-2w+1..t-w}) - mean(x_{t-w+1..t})      (mode "min")

    (the sign flips for mode "max"), divided by |mean(x_{t-2w+1..t-w})| when
    `relative=True`. Each check with d_t < `threshold` counts; a check at or
    above it resets the count. Training stops at the first check where the
    count exceeds `patience` and at least `min_epochs` epochs have run. The
    epoch (1-based) at which the rule fired is `converged_epoch` (None if it
    never fired), also set as `model.history.converged_epoch`: seed 000's
    "epochs to converge".

    Monitor lookup, `mode` ("auto" picks "max" for accuracy/AUC-like names)
    and `restore_best_weights` are Keras's `EarlyStopping`'s; an unknown
    `monitor` warns with the available keys, as Keras does.

    Args:
        monitor: the logged quantity, default "loss" ("val_loss" works).
        threshold: a number >= 0; default 1e-3 (0.1 % relative improvement).
        relative: divide the improvement by the previous window's mean.
        window: w >= 1, the smoothing window in checks.
        patience: the number (>= 0) of extra checks below the threshold before stopping.
        min_epochs: an integer >= 1; never stop before this many epochs.
        mode: "auto", "min" or "max".
        restore_best_weights: restore the weights of the best check at the end.
        check: "epoch" or "batch".
    """

    def __init__(
        self,
        monitor="loss",
        threshold=1e-3,
        relative=True,
        window=1,
        patience=0,
        min_epochs=1,
        mode="auto",
        restore_best_weights=False,
        check="epoch",
        verbose=0,
    ):
        v = _validation
        self.threshold = v.non_negative("threshold", threshold)
        self.window = v.integer("window", window, low=1)
        self.min_epochs = v.integer("min_epochs", min_epochs, low=1)
        self.check = v.choice("check", check, ("epoch", "batch"))
        self.relative = bool(relative)
        super().__init__(
            monitor=monitor,
            patience=v.integer("patience", patience, low=0),
            verbose=verbose,
            mode=v.choice("mode", mode, ("auto", "min", "max")),
            restore_best_weights=restore_best_weights,
        )

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.values = []
        self.improvements = []
        self.converged_epoch = None
        self._below = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if self.check == "epoch":
            self._observe(logs)

    def on_train_batch_end(self, batch, logs=None):
        if self.check == "batch":
            self._observe(logs)

    def _observe(self, logs):
        if self.monitor_op is None:
            compat.set_monitor_op(self)
        current = self.get_monitor_value(logs)
        if current is None:
            return
        current = float(current)
        if self.restore_best_weights and (self.best is None or compat.is_improvement(self, current, self.best)):
            self.best, self.best_epoch = current, self._epoch
            self.best_weights = self.model.get_weights()
        self.values.append(current)
        w = self.window
        if len(self.values) < 2 * w:
            return
        previous = float(np.mean(self.values[-2 * w : -w]))
        latest = float(np.mean(self.values[-w:]))
        minimize = bool(compat.is_improvement(self, 0.0, 1.0))
        gain = previous - latest if minimize else latest - previous
        if self.relative:
            gain /= max(abs(previous), 1e-12)
        self.improvements.append(gain)
        self._below = self._below + 1 if gain < self.threshold else 0
        if self._below > self.patience and self._epoch + 1 >= self.min_epochs:
            self.converged_epoch = self._epoch + 1
            self.stopped_epoch = self._epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        super().on_train_end(logs)
        history = getattr(self.model, "history", None)
        if history is not None:
            history.converged_epoch = self.converged_epoch
