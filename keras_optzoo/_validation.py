"""Argument checks shared by every public constructor.

Each helper returns the cleaned value or raises a ``ValueError`` / ``TypeError``
whose message names the argument, the allowed values and what was received, so
that bad input fails at construction instead of as a NaN many steps later.
"""

import math
import numbers

import keras


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
    return value


def unit_interval(name, value):
    """A decay rate such as a beta or a momentum: a float in [0, 1)."""
    return number(name, value, low=0.0, high=1.0, high_open=True)


def positive(name, value):
    """A strictly positive finite float (epsilon, damping, ...)."""
    return number(name, value, low=0.0, low_open=True)


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
