"""Logs Hessian spectrum statistics during training."""

import numpy as np

import keras

from keras_optzoo import _keras_compat as compat
from keras_optzoo import _validation, curvature


class CurvatureLogger(keras.callbacks.Callback):
    """Every `every` epochs (or steps, with `unit="step"`), on a fixed probe
    batch `(x, y)`, writes into `logs`:

    - `hessian_top_eig_1` ... `hessian_top_eig_k`: the k largest Hessian
      eigenvalues (Lanczos, `lanczos_iterations` HVPs);
    - `hessian_trace`: Hutchinson's trace estimate (`num_probes` HVPs);
    - `grad_norm`: the gradient norm on the probe batch;
    - `eos_ratio`: top eigenvalue / (2 / learning_rate), the edge-of-stability
      indicator (1 is where gradient descent stops being stable).

    Because the values go into `logs`, `History`, `CSVLogger` and
    `TensorBoard` record them with no extra code (place this callback before
    them in the list). Every epoch's logs get every key, so History and
    `CSVLogger` have one row per epoch and their columns from the first
    epoch: with `every > 1` the epochs without a measurement hold NaN.
    With `unit="step"`, every measurement goes into that step's batch logs
    (TensorBoard with `update_freq="batch"` writes them) and into
    `self.steps`, a list of dicts with their `step` (counted from 1 in each
    `fit` call; a new `fit` starts a new list and a new count); the
    epoch's logs (History, CSVLogger, TensorBoard per epoch) get the last
    measurement of that epoch, or NaN if it had none.

    Cost per call: `lanczos_iterations + num_probes` Hessian-vector products
    (each about two backward passes) on the probe batch, plus one gradient.
    Measured (`benchmarks/second_order_cost.py`, docs/second_order_cost.md)
    on the MNIST MLP 784-500-10 with 256 probe images and the defaults
    (k=1, num_probes=10, lanczos_iterations=20), 2-core CPU:

    | backend    | seconds per call | first call (tracing / compiling) |
    |------------|------------------|----------------------------------|
    | TensorFlow | 0.31 - 0.45      | 0.75                             |
    | JAX        | 0.32 - 0.36      | 2.14                             |
    | torch      | 0.56 - 0.87      | 0.61                             |

    (First call: 2026-12-07, a fresh `measure()` after one `fit` step;
    later calls reuse the traced/compiled programs.)

    One `keras_optzoo.curvature.Hessian` serves every call of a run: on JAX
    its loss, gradient and HVP are compiled at the first call and reused.
    The loss is `loss_fn` (default: the model's compiled loss; a Keras loss
    name or callable) plus the model's regularization losses, at
    training=False.
    """

    def __init__(self, x, y, loss_fn=None, k=1, num_probes=10, lanczos_iterations=20, every=1,
                 unit="epoch", seed=0):
        super().__init__()
        self.x, self.y = x, y
        self.loss_fn = loss_fn
        self.k = _validation.integer("k", k, low=1)
        self.num_probes = _validation.integer("num_probes", num_probes, low=1)
        self.lanczos_iterations = _validation.integer("lanczos_iterations", lanczos_iterations, low=self.k)
        self.every = _validation.integer("every", every, low=1)
        self.unit = _validation.choice("unit", unit, ("epoch", "step"))
        self.seed = seed
        self._step = 0
        self._hessian = None
        self._last = None  # the latest step-unit measurement of the current epoch
        self.steps = []

    @property
    def keys(self):
        """The log keys every epoch gets, in order."""
        return [f"hessian_top_eig_{i + 1}" for i in range(self.k)] + ["hessian_trace", "grad_norm", "eos_ratio"]

    def _loss(self):
        if self.loss_fn is not None:
            return self.loss_fn
        loss = getattr(self.model, "loss", None)
        if loss is None:
            raise ValueError("CurvatureLogger needs `loss_fn`, or a model compiled with a loss.")
        if isinstance(loss, keras.losses.Loss):
            # A copy that averages over the batch (its reduction may be None), of the same class, so
            # that Hessian's check still sees a probability loss on a logits model.
            return type(loss).from_config({**loss.get_config(), "reduction": "sum_over_batch_size"})
        if isinstance(loss, str) or callable(loss):  # Hessian averages a function's per-sample values
            return loss
        raise ValueError(f"Cannot use the compiled loss {loss!r}; pass `loss_fn`.")

    def measure(self):
        """The statistics now, as a dict (what goes into `logs`)."""
        model = self.model  # (Callback.model brings JAX's training state back into the variables)
        if self._hessian is None:  # one Hessian per run: compiled once (JAX), reused every call
            self._hessian = curvature.Hessian(model, self._loss(), self.x, self.y)
        stats = self._hessian.statistics(self.k, self.num_probes, self.lanczos_iterations, self.seed)
        eigs = stats["top_eigenvalues"]
        lr = float(keras.ops.convert_to_numpy(compat.current_learning_rate(model.optimizer)))
        out = {f"hessian_top_eig_{i + 1}": float(e) for i, e in enumerate(eigs)}
        out.update(hessian_trace=stats["trace"], grad_norm=stats["grad_norm"], eos_ratio=float(eigs[0]) * lr / 2.0)
        return out

    def set_model(self, model):
        super().set_model(model)
        self._hessian = None

    def on_train_begin(self, logs=None):
        self._step, self.steps = 0, []

    def on_epoch_begin(self, epoch, logs=None):
        self._last = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        if self.unit == "epoch":
            values = self.measure() if (epoch + 1) % self.every == 0 else None
        else:
            values = self._last
        logs.update(values or dict.fromkeys(self.keys, float("nan")))

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self.unit == "step" and self._step % self.every == 0:
            self._last = self.measure()
            self.steps.append(dict(self._last, step=self._step))
            if logs is not None:
                logs.update(self._last)
