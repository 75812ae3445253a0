"""Every use of a private Keras name, in one place.

A custom train step needs a few things Keras 3 keeps behind underscore names
(the compiled loss, the loss tracker, JAX's stateless metric update), and a few
optimizer and callback internals have no public spelling. The rest of the
package calls them only through the functions below; each says what it does
and which Keras version it was read against. `tests/test_keras_compat.py`
checks that every name in `PRIVATE_NAMES` still exists and fails naming the
missing one, so a Keras upgrade breaks there first and not deep in a train
step. pyproject admits `keras>=3.12,<3.16`: every name and hook below is
the same in 3.12.0, 3.13.0, 3.14.0 and 3.15.1 (read in each release's source
and run by the suite on 3.12.0 and 3.15.1), so no function here needs a
per-version branch yet; one that does gets it here, saying which versions
take which path.

Overridden hooks (`Optimizer._backend_update_step`, `_apply_weight_decay`)
are listed too: if Keras stopped calling them our fused kernels would
silently stop running.
"""

import contextlib
import importlib

import keras

CHECKED_KERAS = ("3.12.0", "3.13.0", "3.14.0", "3.15.1")

# (owner, attribute): owner is "Model" (a compiled keras.Model), "Optimizer"
# (a built keras.optimizers.Optimizer), "JAXTrainer" (keras.Model on the JAX
# backend), "MonitorCallback" (keras.callbacks.EarlyStopping) or
# "TensorFlowNN" (the module keras.src.backend.tensorflow.nn, TF backend only).
PRIVATE_NAMES = (
    ("Model", "_compute_loss"),
    ("Model", "_compile_loss"),
    ("Model", "_compile_config"),
    ("Model", "_loss_tracker"),
    ("JAXTrainer", "_update_metrics_variables"),
    ("JAXTrainer", "_make_function"),
    ("JAXTrainer", "_get_state_sharding_spec"),
    ("Optimizer", "_get_variable_index"),
    ("Optimizer", "_trainable_variables"),
    ("Optimizer", "_use_weight_decay"),
    ("Optimizer", "_get_current_learning_rate"),
    ("Optimizer", "_backend_update_step"),
    ("Optimizer", "_apply_weight_decay"),
    ("MonitorCallback", "_set_monitor_op"),
    ("MonitorCallback", "_is_improvement"),
    ("TensorFlowNN", "_compute_moments"),
)


# -- models -------------------------------------------------------------------
def compute_loss(model, x, y, y_pred, sample_weight):
    """The compiled loss plus regularization losses, in training mode; what
    `Trainer.train_step` computes before its gradient (Keras 3.15:
    `Trainer._compute_loss`, which also honours `loss_weights`)."""
    return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)


def compiled_loss(model, y, y_pred, sample_weight=None):
    """The loss given to `compile` (with its `loss_weights`), without the
    regularization losses, as a function of the outputs (Keras 3.15:
    `Trainer._compile_loss`, a `CompileLoss`)."""
    return model._compile_loss(y, y_pred, sample_weight)


def compile_arguments(model):
    """The arguments `compile` was called with, as given (the optimizer
    instance itself, not a copy) (Keras 3.15: `Trainer._compile_config`, a
    SerializableDict whose `config` keeps them; `get_compile_config()` only
    returns their serialized form)."""
    return dict(model._compile_config.config)


def batch_size(x):
    """The leading size of the first non-None input (dynamic under tf.function)."""
    first = next(i for i in keras.tree.flatten(x) if i is not None)
    return keras.ops.shape(first)[0]


def track_loss(model, loss, x):
    """Updates the "loss" entry of the logs, weighted by the batch size, as
    Keras's own train steps do (Keras 3.15: `Trainer._loss_tracker`, a Mean)."""
    model._loss_tracker.update_state(loss, sample_weight=batch_size(x))


def update_metrics_stateless(model, metrics_values, loss, x, y, y_pred, sample_weight):
    """JAX: the loss tracker and compiled metrics updated on the stateless
    metric values; returns (logs, new metric values) (Keras 3.15:
    `JAXTrainer._update_metrics_variables`, used by its own train_step)."""
    return model._update_metrics_variables(metrics_values, loss, x, y, y_pred, sample_weight)


def jax_step_function(model, step):
    """JAX: `fit`'s train function around the per-step `step(state, data)`
    (the loop over `steps_per_execution` batches), as Keras's
    `make_train_function` builds it (Keras 3.15: `JAXTrainer._make_function`)."""
    return model._make_function(step)


def jax_state_shardings(model):
    """JAX: the shardings of the train state under the current
    `keras.distribution`, as Keras's `make_train_function` passes them to
    `jit` (Keras 3.15: `JAXTrainer._get_state_sharding_spec`)."""
    return model._get_state_sharding_spec()


@contextlib.contextmanager
def tensorflow_moments(compute):
    """While the block runs (on TensorFlow: while a step is traced), the batch
    statistics of BatchNormalization, LayerNormalization and
    GroupNormalization come from `compute(x, axes, keepdims) -> (mean,
    variance)` (Keras 3.15: `keras.src.backend.tensorflow.nn.moments` calls
    the module's `_compute_moments`, i.e. `tf.nn.moments`, whose variance
    stops the gradient at the mean: right gradients, wrong Hessians)."""
    module = importlib.import_module("keras.src.backend.tensorflow.nn")
    original = module._compute_moments
    module._compute_moments = compute
    try:
        yield
    finally:
        module._compute_moments = original


# -- optimizers ---------------------------------------------------------------
def variable_index(optimizer, variable):
    """Position of `variable` in the optimizer's variable list, which indexes
    every per-variable slot (Keras 3.15: `BaseOptimizer._get_variable_index`,
    keyed by the variable's path)."""
    return optimizer._get_variable_index(variable)


def built_variables(optimizer):
    """The trainable variables the optimizer was built for (Keras 3.15:
    `BaseOptimizer._trainable_variables`)."""
    return optimizer._trainable_variables


def uses_weight_decay(optimizer, variable):
    """Whether Keras's decoupled weight decay applies to `variable` (not in
    `exclude_from_weight_decay`) (Keras 3.15: `BaseOptimizer._use_weight_decay`)."""
    return optimizer._use_weight_decay(variable)


def current_learning_rate(optimizer):
    """The learning rate of the next step, a schedule evaluated at
    `iterations` (Keras 3.15: `BaseOptimizer._get_current_learning_rate`)."""
    return optimizer._get_current_learning_rate()


# -- callbacks ----------------------------------------------------------------
def set_monitor_op(callback):
    """Resolves `mode="auto"` of a monitor callback to min or max from the
    monitored name (Keras 3.15: `MonitorCallback._set_monitor_op`)."""
    callback._set_monitor_op()


def is_improvement(callback, value, reference):
    """`value` better than `reference` by more than `min_delta`, in the
    callback's mode (Keras 3.15: `MonitorCallback._is_improvement`)."""
    return callback._is_improvement(value, reference)
