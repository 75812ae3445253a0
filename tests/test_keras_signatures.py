"""Every first-order class takes the constructor arguments of its Keras
counterpart and does what Keras does with them (checked against the
built-in and torch.optim), or raises naming the keras_optzoo class that
does."""

import inspect

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from conftest import assert_all_close, random_problem, run_keras_optimizer, run_torch_optimizer

# ours -> (Keras counterpart, arguments that select our class's rule there)
COUNTERPARTS = {
    kz.SGD: (keras.optimizers.SGD, {}),
    kz.Momentum: (keras.optimizers.SGD, {"momentum": 0.9}),
    kz.Nesterov: (keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
    kz.Adagrad: (keras.optimizers.Adagrad, {}),
    kz.RMSprop: (keras.optimizers.RMSprop, {}),
    kz.Adam: (keras.optimizers.Adam, {}),
    kz.AMSGrad: (keras.optimizers.Adam, {"amsgrad": True}),
    kz.AdamW: (keras.optimizers.AdamW, {}),
}


def _keras_signature(keras_cls, overrides):
    params = inspect.signature(keras_cls.__init__).parameters
    kwargs = {n: p.default for n, p in params.items() if n not in ("self", "kwargs", "name")}
    kwargs.update(overrides)
    return kwargs


def test_every_first_order_class_has_a_counterpart_here():
    assert set(COUNTERPARTS) == set(kz.optimizers.FIRST_ORDER)


@pytest.mark.parametrize("cls", list(COUNTERPARTS), ids=lambda c: c.__name__)
def test_accepts_the_keras_constructor_signature(cls):
    keras_cls, overrides = COUNTERPARTS[cls]
    kwargs = _keras_signature(keras_cls, overrides)
    ours = cls(**kwargs)
    config = ours.get_config()
    for name in ("momentum", "nesterov", "amsgrad", "centered", "rho", "beta_1", "beta_2", "epsilon"):
        if name in kwargs and name in config:
            assert config[name] == kwargs[name], name


# The same arguments, the same numbers as the Keras built-in (keras_compat
# where our default arithmetic differs from Keras's, see the README).
SAME_AS_KERAS = {
    "SGD(momentum=0.9)": (lambda: kz.SGD(0.05, momentum=0.9), lambda: keras.optimizers.SGD(0.05, momentum=0.9)),
    "SGD(momentum=0.9, nesterov=True)": (lambda: kz.SGD(0.05, momentum=0.9, nesterov=True),
                                         lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
    "RMSprop(momentum, centered)": (
        lambda: kz.RMSprop(0.01, momentum=0.8, centered=True, keras_compat=True),
        lambda: keras.optimizers.RMSprop(0.01, momentum=0.8, centered=True)),
    "RMSprop(momentum)": (lambda: kz.RMSprop(0.01, momentum=0.8, keras_compat=True),
                          lambda: keras.optimizers.RMSprop(0.01, momentum=0.8)),
    "Adam(amsgrad=True)": (lambda: kz.Adam(0.01, amsgrad=True, keras_compat=True),
                           lambda: keras.optimizers.Adam(0.01, amsgrad=True)),
    "AdamW(amsgrad=True)": (lambda: kz.AdamW(0.01, amsgrad=True, keras_compat=True),
                            lambda: keras.optimizers.AdamW(0.01, amsgrad=True)),
}


@pytest.mark.parametrize("name", list(SAME_AS_KERAS))
def test_keras_options_give_the_keras_numbers(name):
    ours, theirs = SAME_AS_KERAS[name]
    init, grads = random_problem(30)
    assert_all_close(run_keras_optimizer(ours(), init, grads), run_keras_optimizer(theirs(), init, grads))


def _torch(name):
    import torch.optim as to

    return {
        "rmsprop_momentum_centered": lambda p: to.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8, momentum=0.8, centered=True),
        "rmsprop_centered": lambda p: to.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8, centered=True),
        "adamw_amsgrad": lambda p: to.AdamW(p, lr=0.01, eps=1e-8, weight_decay=0.05, amsgrad=True),
    }[name]


OURS_VS_TORCH = {
    "rmsprop_momentum_centered": lambda: kz.RMSprop(0.01, momentum=0.8, centered=True, epsilon=1e-8),
    "rmsprop_centered": lambda: kz.RMSprop(0.01, centered=True, epsilon=1e-8),
    "adamw_amsgrad": lambda: kz.AdamW(0.01, amsgrad=True, epsilon=1e-8, weight_decay=0.05),
}


@pytest.mark.parametrize("name", list(OURS_VS_TORCH))
def test_default_arithmetic_of_the_options_matches_torch(name):
    init, grads = random_problem(30)
    assert_all_close(run_keras_optimizer(OURS_VS_TORCH[name](), init, grads),
                     run_torch_optimizer(_torch(name), init, grads))


@pytest.mark.parametrize(
    "make, pointer",
    [
        (lambda: kz.Momentum(momentum=0.9, nesterov=True), "keras_optzoo.Nesterov"),
        (lambda: kz.Nesterov(momentum=0.9, nesterov=False), "keras_optzoo.Momentum"),
        (lambda: kz.AMSGrad(amsgrad=False), "keras_optzoo.Adam"),
    ],
)
def test_an_option_that_is_another_class_names_it(make, pointer):
    with pytest.raises(ValueError, match=pointer.replace(".", r"\.")):
        make()
