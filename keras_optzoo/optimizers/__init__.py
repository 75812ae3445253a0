"""keras_optzoo optimizers: `keras.optimizers.Optimizer` subclasses in `keras.ops`."""

from keras_optzoo.optimizers.adam import AMSGrad, Adam, AdamW
from keras_optzoo.optimizers.adaptive import Adagrad, RMSprop
from keras_optzoo.optimizers.registry import ALL_OPTIMIZERS, get
from keras_optzoo.optimizers.sgd import SGD, Momentum, Nesterov

__all__ = [
    "SGD",
    "Momentum",
    "Nesterov",
    "Adagrad",
    "RMSprop",
    "Adam",
    "AMSGrad",
    "AdamW",
    "ALL_OPTIMIZERS",
    "get",
]
