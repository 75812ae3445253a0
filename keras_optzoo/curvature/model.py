"""`with_curvature(model)`: a model whose `fit` feeds Hessian information to
second-order optimizers."""

import keras

from keras_optzoo import _keras_compat as compat
from keras_optzoo import backend
from keras_optzoo.curvature.update import CurvatureUpdate
from keras_optzoo.optimizers.second_order import SecondOrderOptimizer


@keras.saving.register_keras_serializable(package="keras_optzoo")
class CurvatureModel(keras.Model):
    """Wraps `model` (sharing its layers and weights) and, when the compiled
    optimizer is a second-order keras_optzoo optimizer, computes what it asks
    for (Hutchinson diagonal or a Newton-CG direction) every
    `hessian_update_interval` steps inside the backend's `train_step`
    (XLA-compatible on TensorFlow and JAX). With a first-order optimizer it
    trains exactly like `model`."""

    def __init__(self, model, shares_optimizer=False, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        # Loading: whether the saved wrapper and `model` trained one optimizer
        # (with_curvature of a compiled model). Saving stores that optimizer's
        # state once, under `model`, so the loaded wrapper must share it again.
        self._shares_optimizer = shares_optimizer
        # Keras's compile maps dict losses and metrics to outputs, and names
        # the logs (`cls_loss`, `reg_mae`), by the model's `output_names`; a
        # subclassed Model has none of its own, so the wrapper takes the
        # wrapped model's.
        names = getattr(model, "output_names", None)
        if names:
            self.output_names = list(names)
        if model.built:  # so that loading builds the optimizer and restores its state
            self.built = True

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def train_step(self, *args, **refresh):
        _, inner = backend.optimizers_of(self)  # (a LossScaleOptimizer may wrap ours)
        if not isinstance(inner, SecondOrderOptimizer):
            return super().train_step(*args)
        inner.supplied_by_train_step()  # this step writes the curvature slots before `apply`
        # (CurvatureUpdate raises, at the first step, for what it cannot
        # compute: e.g. SophiaG on a loss without labels to sample. Not in an
        # overridden `compile`: Keras's loading skips a custom compile.)
        return backend.train_step(self, *args, curvature=CurvatureUpdate(inner, self), **refresh)

    def make_train_function(self, force=False):
        # JAX: a refresh program and a plain one when the refresh is every k > 1 steps.
        _, inner = backend.optimizers_of(self)
        if backend.make_train_function is None or not isinstance(inner, SecondOrderOptimizer):
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return None
        self.train_function = backend.make_train_function(self, CurvatureUpdate(inner, self))
        if self.train_function is None:
            return super().make_train_function(force)
        return None

    def build(self, input_shape=None):
        if not self.model.built and input_shape is not None:
            self.model.build(input_shape)
        self.built = True

    def get_config(self):
        config = super().get_config()
        config["model"] = keras.saving.serialize_keras_object(self.model)
        optimizer = getattr(self, "optimizer", None)
        config["shares_optimizer"] = optimizer is not None and getattr(self.model, "optimizer", None) is optimizer
        return config

    def compile_from_config(self, config):
        inner = getattr(self.model, "optimizer", None)  # the loaded `model` is compiled by then, from its own config
        if not self._shares_optimizer or inner is None:
            return super().compile_from_config(config)
        config = dict(keras.saving.deserialize_keras_object(config), optimizer=inner)
        self.compile(**config)
        if self.built:
            inner.build(self.trainable_variables)
        return None

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)


def with_curvature(model):
    """Returns a model sharing `model`'s layers and weights whose `fit` supplies
    Hessian information to second-order optimizers (Newton, Hybrid, AdaHessian,
    SophiaH, SophiaG). If `model` is compiled, the wrapper is compiled with
    every argument `compile` was given (the same optimizer instance, loss,
    `loss_weights`, metrics, weighted metrics, `run_eagerly`,
    `steps_per_execution`, `jit_compile`; a LossScaleOptimizer that Keras
    added under mixed_float16 is kept); a saved wrapper loads back with that
    one optimizer shared again, its state restored exactly.

    The curvature is that of each step's own training loss: the same batch,
    dropout masks and BatchNormalization batch statistics as the gradient
    (and the moving statistics are updated once per step, as in first-order
    training), plus the model's regularization losses.

        model = keras_optzoo.with_curvature(model)
        model.compile(optimizer=keras_optzoo.Hybrid(), loss="sparse_categorical_crossentropy")
        model.fit(x, y)
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"`model` must be a keras.Model; received {type(model).__name__}.")
    if isinstance(model, CurvatureModel):
        return model
    if type(model).train_step is not keras.Model.train_step:
        raise TypeError(
            f"`model` ({type(model).__name__}) overrides `train_step`; with_curvature runs its own train step "
            "(the curvature needs the loss) and would bypass yours. Either drop the override, or keep it and "
            "train in your own loop: compute the Hessian information with keras_optzoo.curvature (e.g. "
            "`Hessian(model, loss, x, y).diagonal()`) and hand it to the optimizer with "
            "`optimizer.set_curvature(values)` before `optimizer.apply(grads)` (docs/guides/training-loops.md)."
        )
    wrapped = CurvatureModel(model, name=f"{model.name}_with_curvature")
    if getattr(model, "compiled", False) and model.optimizer is not None:
        arguments = compat.compile_arguments(model)
        arguments["optimizer"] = model.optimizer  # the instance (LossScaleOptimizer included) and its state
        wrapped.compile(**arguments)
    return wrapped
