"""Property-based checks (hypothesis) of what bad input does: every value
of every hyperparameter either builds an optimizer whose steps stay finite,
or raises ValueError/TypeError naming the argument at construction. Also
gradients that do not fit the variables, and integer variables."""

import inspect
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras
import keras_optzoo as kz
from conftest import BACKEND

SECOND_ORDER = set(kz.optimizers.SECOND_ORDER)
BASE_NUMERIC = ["weight_decay", "clipnorm", "clipvalue", "global_clipnorm", "ema_momentum", "loss_scale_factor",
                "gradient_accumulation_steps"]  # fmt: skip


def arguments(cls):
    """The constructor arguments of `cls` (its own and the base keywords)."""
    own = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")]
    return own + [a for a in BASE_NUMERIC if a not in own]


# Anything a user might pass: odd numbers, non-numbers, numbers in disguise.
ANY_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2.0, max_value=2.0),
    st.sampled_from([0, 1, -1, 0.0, 1.0, 1 - 1e-9, 1e-45, 1e-39, 1e39, 3, 10, 2**40]),
    st.integers(min_value=-(2**62), max_value=2**62),
    st.booleans(),
    st.none(),
    st.text(max_size=4),
    st.sampled_from(["0.1", "classic", "cg", "diagonal", [0.1], (0.9,), {"lr": 1.0}, np.float32(0.5), np.int64(2)]),
)

SETTINGS = settings(
    max_examples=40 if BACKEND != "jax" else 25,
    deadline=None,
    derandomize=True,  # the same examples on every run and backend
    suppress_health_check=[HealthCheck.too_slow],
)


def _steps_stay_finite(opt, steps=4):
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (2,)]
    variables = [keras.Variable(rng.standard_normal(s).astype("float32")) for s in shapes]
    opt.build(variables)
    for _ in range(steps):
        if type(opt) in SECOND_ORDER:
            opt.set_curvature([keras.ops.convert_to_tensor(rng.standard_normal(s).astype("float32")) for s in shapes])
        grads = [keras.ops.convert_to_tensor(rng.uniform(-1, 1, s).astype("float32")) for s in shapes]
        opt.apply(grads, variables)
    values = [keras.ops.convert_to_numpy(v) for v in variables + list(opt.variables)]
    return all(np.all(np.isfinite(np.asarray(v, dtype="float64"))) for v in values)


def _moderate(value):
    """A value a finite-steps promise can be made for (the learning rate
    times the gradient must fit in float32 after a few steps)."""
    return not isinstance(value, (int, float)) or isinstance(value, bool) or abs(value) <= 1e3


@pytest.mark.parametrize("cls", kz.optimizers.ALL_OPTIMIZERS, ids=lambda c: c.__name__)
@SETTINGS
@given(data=st.data())
def test_any_hyperparameter_builds_a_finite_optimizer_or_raises_naming_it(cls, data):
    arg = data.draw(st.sampled_from(arguments(cls)), label="argument")
    value = data.draw(ANY_VALUE, label="value")
    try:
        opt = cls(**{arg: value})
    except (ValueError, TypeError) as error:
        assert arg in str(error), f"{cls.__name__}({arg}={value!r}) raised without naming it: {error}"
        return
    if arg not in ("name",) and _moderate(value):
        assert _steps_stay_finite(opt), f"{cls.__name__}({arg}={value!r}) produced a non-finite value"


def _decay_arguments(cls):
    return [a for a in arguments(cls) if a.startswith("beta") or a in ("momentum", "rho")]


# Only the optimizers that have a decay rate (SGD and Newton have none).
WITH_DECAYS = [cls for cls in kz.optimizers.ALL_OPTIMIZERS if _decay_arguments(cls)]


@pytest.mark.parametrize("cls", WITH_DECAYS, ids=lambda c: c.__name__)
@SETTINGS
@given(betas=st.lists(st.floats(min_value=-0.5, max_value=1.5), min_size=1, max_size=3))
def test_decay_rates_outside_unit_interval_are_rejected(cls, betas):
    names = _decay_arguments(cls)[: len(betas)]
    kwargs = dict(zip(names, betas))
    bad = [n for n, b in kwargs.items() if not (0.0 <= b < 1.0) or np.float32(b) >= 1.0]
    if bad:
        with pytest.raises(ValueError) as info:
            cls(**kwargs)
        assert any(n in str(info.value) for n in bad)
    else:
        assert _steps_stay_finite(cls(**kwargs))


def test_values_that_break_in_float32_are_rejected():
    with pytest.raises(ValueError, match="beta_2.*float32"):
        kz.Adam(beta_2=1 - 1e-9)  # 1 - beta_2^t would be 0 in float32
    with pytest.raises(ValueError, match="epsilon.*float32"):
        kz.Adam(epsilon=1e-45)  # 0 in float32
    with pytest.raises(ValueError, match="learning_rate.*float32"):
        kz.SGD(1e39)  # inf in float32
    assert math.isclose(kz.Adam(epsilon=1e-30).epsilon, 1e-30)


# -- gradients and variables ------------------------------------------------------
def _variables():
    return [keras.Variable(np.ones((3, 2), "float32"), name="kernel"), keras.Variable(np.ones(2, "float32"), name="bias")]


@pytest.mark.parametrize("cls", kz.optimizers.FIRST_ORDER, ids=lambda c: c.__name__)
def test_gradient_of_the_wrong_shape_is_a_clear_error(cls):
    opt = cls()
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*'kernel'.*\(3, 2\)"):
        opt.apply([keras.ops.ones((2, 3)), keras.ops.ones(2)], _variables())
    with pytest.raises(ValueError, match="2 variables.*1 gradient"):
        opt.apply([keras.ops.ones((3, 2))], _variables())


@pytest.mark.parametrize("cls", kz.optimizers.FIRST_ORDER, ids=lambda c: c.__name__)
def test_integer_gradient_is_a_clear_error(cls):
    with pytest.raises(TypeError, match="'kernel'.*int32.*floating"):
        cls().apply([keras.ops.ones((3, 2), dtype="int32"), keras.ops.ones(2)], _variables())


@pytest.mark.parametrize("cls", kz.optimizers.ALL_OPTIMIZERS, ids=lambda c: c.__name__)
def test_integer_variable_is_a_clear_error(cls):
    # (trainable=False: torch refuses an integer tensor that requires grad)
    counter = keras.Variable(np.zeros(2, "int32"), name="counter", trainable=False)
    with pytest.raises(TypeError, match="floating.*'counter'.*int32"):
        cls().build([counter])


def test_lower_precision_gradient_is_cast_to_the_variable():
    """A float16 gradient for a float32 variable is a supported case (mixed
    precision produces it), not an error."""
    variables = _variables()
    kz.SGD(0.5).apply([keras.ops.ones((3, 2), dtype="float16"), keras.ops.ones(2, dtype="float16")], variables)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(variables[0]), 0.5 * np.ones((3, 2)))
