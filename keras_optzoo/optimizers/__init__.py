"""keras_optzoo optimizers: `keras.optimizers.Optimizer` subclasses in `keras.ops`."""

from keras_optzoo.optimizers.adam import AMSGrad, Adam, AdamW
from keras_optzoo.optimizers.adaptive import Adagrad, RMSprop
from keras_optzoo.optimizers.kronecker import SOAP, Shampoo
from keras_optzoo.optimizers.registry import ALL_OPTIMIZERS, FIRST_ORDER, KRONECKER, SECOND_ORDER, get
from keras_optzoo.optimizers.second_order import (
    AdaHessian,
    CurvatureRequest,
    Hybrid,
    Newton,
    SecondOrderOptimizer,
    SophiaG,
    SophiaH,
)
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
    "Newton",
    "Hybrid",
    "AdaHessian",
    "SophiaH",
    "SophiaG",
    "SOAP",
    "Shampoo",
    "SecondOrderOptimizer",
    "CurvatureRequest",
    "ALL_OPTIMIZERS",
    "FIRST_ORDER",
    "SECOND_ORDER",
    "KRONECKER",
    "get",
]
