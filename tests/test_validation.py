"""Bad hyperparameters fail at construction with a message that names the
argument and the allowed values."""

import math

import pytest

import keras_optzoo as kz

ALL = [kz.SGD, kz.Momentum, kz.Nesterov, kz.Adagrad, kz.RMSprop, kz.Adam, kz.AMSGrad, kz.AdamW]

# (classes, argument, bad value, exception, words the message must contain)
BAD = [
    (ALL, "learning_rate", -0.1, ValueError, ["learning_rate", "[0.0, inf]"]),
    (ALL, "learning_rate", math.nan, ValueError, ["learning_rate", "finite"]),
    (ALL, "learning_rate", math.inf, ValueError, ["learning_rate", "finite"]),
    (ALL, "learning_rate", "0.1", TypeError, ["learning_rate", "str"]),
    (ALL, "learning_rate", True, TypeError, ["learning_rate", "bool"]),
    (ALL, "weight_decay", -1e-3, ValueError, ["weight_decay", "[0.0, inf]"]),
    (ALL, "clipnorm", 0.0, ValueError, ["clipnorm", "(0.0, inf]"]),
    (ALL, "clipvalue", -1.0, ValueError, ["clipvalue"]),
    (ALL, "global_clipnorm", math.nan, ValueError, ["global_clipnorm"]),
    (ALL, "loss_scale_factor", 0, ValueError, ["loss_scale_factor"]),
    (ALL, "gradient_accumulation_steps", 1, ValueError, ["gradient_accumulation_steps", ">= 2"]),
    (ALL, "gradient_accumulation_steps", 2.5, TypeError, ["gradient_accumulation_steps"]),
    (ALL, "ema_momentum", 1.5, ValueError, ["ema_momentum", "[0.0, 1.0]"]),
    (ALL, "use_ema", "yes", TypeError, ["use_ema"]),
    ([kz.Momentum, kz.Nesterov], "momentum", 1.0, ValueError, ["momentum", "[0.0, 1.0)"]),
    ([kz.Momentum, kz.Nesterov], "momentum", -0.1, ValueError, ["momentum", "[0.0, 1.0)"]),
    ([kz.Momentum, kz.Nesterov], "momentum", None, TypeError, ["momentum", "NoneType"]),
    ([kz.Momentum], "form", "heavy-ball", ValueError, ["form", "'classic'", "'ema'"]),
    ([kz.RMSprop], "rho", 1.0, ValueError, ["rho", "[0.0, 1.0)"]),
    ([kz.Adam, kz.AMSGrad, kz.AdamW], "beta_1", 1.0, ValueError, ["beta_1", "[0.0, 1.0)"]),
    ([kz.Adam, kz.AMSGrad, kz.AdamW], "beta_2", -0.5, ValueError, ["beta_2", "[0.0, 1.0)"]),
    ([kz.Adam, kz.AMSGrad, kz.AdamW], "beta_2", math.nan, ValueError, ["beta_2"]),
    ([kz.Adagrad, kz.RMSprop, kz.Adam, kz.AMSGrad, kz.AdamW], "epsilon", 0.0, ValueError,
     ["epsilon", "(0.0, inf]"]),
    ([kz.Adagrad, kz.RMSprop, kz.Adam], "epsilon", -1e-8, ValueError, ["epsilon"]),
    ([kz.Adagrad], "initial_accumulator_value", -0.1, ValueError, ["initial_accumulator_value"]),
]

CASES = [
    pytest.param(cls, arg, value, exc, words, id=f"{cls.__name__}-{arg}={value!r}")
    for classes, arg, value, exc, words in BAD
    for cls in classes
]


@pytest.mark.parametrize("cls, arg, value, exc, words", CASES)
def test_bad_argument_raises_at_construction(cls, arg, value, exc, words):
    with pytest.raises(exc) as info:
        cls(**{arg: value})
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


@pytest.mark.parametrize("cls", ALL)
def test_integer_and_numpy_hyperparameters_are_accepted(cls):
    import numpy as np

    opt = cls(learning_rate=1, clipnorm=np.float32(2.0))
    assert float(opt.learning_rate) == 1.0


def test_unknown_keyword_is_rejected():
    with pytest.raises(ValueError, match="not recognized"):
        kz.Adam(betas=(0.9, 0.99))
