"""`get(identifier)`: the keras_optzoo counterpart of `keras.optimizers.get`."""

import keras

from keras_optzoo.optimizers.adam import AMSGrad, Adam, AdamW
from keras_optzoo.optimizers.adaptive import Adagrad, RMSprop
from keras_optzoo.optimizers.kronecker import SOAP, Shampoo
from keras_optzoo.optimizers.second_order import AdaHessian, Hybrid, Newton, SophiaG, SophiaH
from keras_optzoo.optimizers.sgd import SGD, Momentum, Nesterov

FIRST_ORDER = (SGD, Momentum, Nesterov, Adagrad, RMSprop, Adam, AMSGrad, AdamW)
SECOND_ORDER = (Newton, Hybrid, AdaHessian, SophiaH, SophiaG)
# Kronecker-factored preconditioners: gradients only (plain compile), like
# the first-order ones, but with matrix state per weight dimension.
KRONECKER = (SOAP, Shampoo)
ALL_OPTIMIZERS = FIRST_ORDER + SECOND_ORDER + KRONECKER

# Lower-case names and the seeds' abbreviations. GD and mini-batch GD are SGD
# run with another batch size (see `SGD`), so they name the same class.
_ALIASES = {
    "gd": SGD,
    "gradient_descent": SGD,
    "minibatch": SGD,
    "mini_batch": SGD,
    "nag": Nesterov,
    "sophia": SophiaH,
}


def _names():
    names = {cls.__name__.lower(): cls for cls in ALL_OPTIMIZERS}
    names.update(_ALIASES)
    return names


def get(identifier):
    """Returns a keras_optzoo optimizer for a name, a config dict or an instance.

    - a name, case-insensitive, `-`/`_`/spaces ignored: "adam", "AMSGrad",
      "nesterov" (also "nag"), "gd"/"minibatch" (both SGD);
    - a dict as written by `keras.optimizers.serialize` (or our `get_config`
      wrapped as `{"class_name": ..., "config": ...}`);
    - an optimizer instance, returned unchanged.
    """
    if isinstance(identifier, keras.optimizers.Optimizer):
        return identifier
    names = _names()
    if isinstance(identifier, str):
        key = identifier.strip().lower().replace("-", "_").replace(" ", "_")
        cls = names.get(key) or names.get(key.replace("_", ""))
        if cls is None:
            raise ValueError(
                f"Unknown optimizer {identifier!r}. `identifier` must be one of: "
                f"{', '.join(sorted(names))} (or a config dict or an optimizer instance)."
            )
        return cls()
    if isinstance(identifier, dict):
        classes = {cls.__name__: cls for cls in ALL_OPTIMIZERS}
        obj = keras.saving.deserialize_keras_object(identifier, custom_objects=classes)
        if not isinstance(obj, keras.optimizers.Optimizer):
            raise ValueError(f"Config {identifier!r} does not describe an optimizer.")
        return obj
    raise TypeError(
        "`identifier` must be an optimizer name (str), a config dict or a "
        f"keras.optimizers.Optimizer; received {type(identifier).__name__}."
    )
