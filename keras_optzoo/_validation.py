"""Argument checks shared by every public constructor.

Each helper returns the cleaned value or raises a ``ValueError`` / ``TypeError``
whose message names the argument, the allowed values and what was received, so
that bad input fails at construction instead of as a NaN many steps later.
"""

import math
import numbers

import keras

# Optimizer state is float32 unless the variables say otherwise: a value
# that is finite or nonzero in Python but not in float32 would turn into an
# inf or a division by zero inside the update.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.1754943508222875e-38  # the smallest normal float32
FLOAT32_BELOW_ONE = 0.99999994039535522  # the largest float32 below 1


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def number(name, value, *, low=None, high=None, low_open=False, high_open=False):
    """Checks that ``value`` is a finite real number inside the given interval.

    Returns it as a Python ``float``.
    """
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    if not _is_real(value):
        raise TypeError(
            f"`{name}` must be a real number in {interval}; "
            f"received {value!r} of type {type(value).__name__}."
        )
    value = float(value)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(f"`{name}` must be a finite number in {interval}; received {value!r}.")
    if abs(value) > FLOAT32_MAX:
        raise ValueError(f"`{name}` must be finite in float32 (|x| <= {FLOAT32_MAX:.4g}); received {value!r}.")
    return value


def unit_interval(name, value):
    """A decay rate such as a beta or a momentum: a float in [0, 1) that stays
    below 1 in float32 (else 1 - beta^t is 0: a division by zero)."""
    value = number(name, value, low=0.0, high=1.0, high_open=True)
    if value > FLOAT32_BELOW_ONE:
        raise ValueError(
            f"`{name}` must be in [0, 1) and below 1 in float32 (<= {FLOAT32_BELOW_ONE!r}); "
            f"received {value!r}, too close to 1 for float32."
        )
    return value


def positive(name, value):
    """A strictly positive finite float (epsilon, damping, ...) that stays
    nonzero in float32."""
    value = number(name, value, low=0.0, low_open=True)
    if value < FLOAT32_TINY:
        raise ValueError(
            f"`{name}` must be > 0 and at least {FLOAT32_TINY:.4g} (the smallest normal float32); "
            f"received {value!r}."
        )
    return value


def non_negative(name, value):
    return number(name, value, low=0.0)


def optional_non_negative(name, value):
    return None if value is None else non_negative(name, value)


def integer(name, value, *, low):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(
            f"`{name}` must be an integer >= {low}; received {value!r} "
            f"of type {type(value).__name__}."
        )
    if value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}; received {value!r}.")
    return int(value)


def choice(name, value, allowed):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(a) for a in allowed)}; received {value!r}."
        )
    return value


def learning_rate(value):
    """A finite float >= 0, a ``LearningRateSchedule`` or a zero-argument callable."""
    if isinstance(value, keras.optimizers.schedules.LearningRateSchedule) or (
        callable(value) and not _is_real(value)
    ):
        return value
    if not _is_real(value):
        raise TypeError(
            "`learning_rate` must be a finite float >= 0, a "
            "keras.optimizers.schedules.LearningRateSchedule or a callable; "
            f"received {value!r} of type {type(value).__name__}."
        )
    return number("learning_rate", value, low=0.0)


def boolean(name, value):
    """True or False (a NumPy bool too); anything else, 0 and 1 included, is a TypeError."""
    if not isinstance(value, (bool,)) and type(value).__name__ != "bool_":
        raise TypeError(f"`{name}` must be True or False; received {value!r} of type {type(value).__name__}.")
    return bool(value)
