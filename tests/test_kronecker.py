"""SOAP and Shampoo: SOAP against pytorch-optimizer 4.1.0's `SOAP` (the
reference the issue names), Shampoo against a float64 NumPy transcription of
Distributed Shampoo's single-device step, both through `optimizer.apply`;
then fit, jit, JAX's stateless_apply, save/resume and the failure guard."""

import itertools

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from conftest import BACKEND, random_problem, run_keras_optimizer, run_torch_optimizer

# A Dense kernel (in, out), a bias, a Conv2D kernel (kh, kw, in, out), a scale.
# Each first-step factor has at most a one-dimensional null space, so the
# eigenbases are defined up to sign and both sides pick the same rotation.
SOAP_SHAPES = [(4, 3), (3,), (3, 3, 2, 4), (4,)]


def _torch_soap(**kwargs):
    from pytorch_optimizer import SOAP as TorchSOAP

    return lambda params: TorchSOAP(params, **kwargs)


def _assert_close(ours, reference, rtol):
    for i, (a, b) in enumerate(zip(ours, reference)):
        scale = np.max(np.abs(b))
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=f"variable {i}")


@pytest.mark.parametrize("frequency", [3, 10])
def test_soap_matches_pytorch_optimizer(frequency):
    init, grads = random_problem(30, shapes=SOAP_SHAPES)
    ours = run_keras_optimizer(kz.SOAP(precondition_frequency=frequency), init, grads)
    reference = run_torch_optimizer(
        _torch_soap(lr=3e-3, betas=(0.95, 0.95), weight_decay=0.01, eps=1e-8, precondition_frequency=frequency),
        init, grads,
    )
    moved = max(np.max(np.abs(a - b)) for a, b in zip(reference, init))
    assert moved > 0.05  # 29 steps of ~3e-3: the comparison is about real updates
    _assert_close(ours, reference, 1e-5)


def test_soap_options_match_pytorch_optimizer():
    """merge_dims (a Conv2D kernel merged to (9, 8)), precondition_1d, a
    dimension above max_precondition_dim, another shampoo_beta. (pytorch-
    optimizer 4.1.0 cannot merge 1-D tensors, so no bias in the merged run.)"""
    init, grads = random_problem(20, seed=1, shapes=[(4, 3), (3, 3, 2, 4)])
    kwargs = dict(precondition_frequency=4, merge_dims=True, max_precondition_dim=10)
    ours = run_keras_optimizer(kz.SOAP(**kwargs), init, grads)
    reference = run_torch_optimizer(_torch_soap(**kwargs), init, grads)
    _assert_close(ours, reference, 1e-4)

    init, grads = random_problem(20, seed=2, shapes=[(4, 3), (2,), (12, 2)])
    kwargs = dict(precondition_frequency=4, precondition_1d=True, max_precondition_dim=6)
    ours = run_keras_optimizer(kz.SOAP(shampoo_beta=0.8, **kwargs), init, grads)
    reference = run_torch_optimizer(_torch_soap(shampoo_beta=0.8, **kwargs), init, grads)
    _assert_close(ours, reference, 1e-5)


# -- Shampoo: a NumPy transcription of the algorithm (float64) ---------------------
def _inverse_root(a, epsilon, exponent):
    values, vectors = np.linalg.eigh(a + epsilon * np.eye(len(a)))
    if values.min() < epsilon:
        values = values - values.min() + epsilon
    return (vectors * values ** -exponent) @ vectors.T


def _mode(x, d):
    moved = np.moveaxis(x, d, 0).reshape(x.shape[d], -1)
    return moved @ moved.T


def _apply_modes(x, matrices):
    for d, m in enumerate(matrices):
        x = np.moveaxis(np.tensordot(m, np.moveaxis(x, d, 0), axes=1), 0, d)
    return x


def _shampoo_shape(shape, block, merge):
    """Size-1 dimensions out; with `merge`, neighbours joined from the right
    while their product is <= block (Distributed Shampoo's merge_small_dims)."""
    dims = [n for n in shape if n != 1] or [1]
    if not merge:
        return tuple(dims)
    out = []
    for n in dims[::-1]:
        if out and out[0] * n <= block:
            out[0] *= n
        else:
            out.insert(0, n)
    return tuple(out)


def numpy_shampoo(init, grads, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-12, weight_decay=1e-5, block=8192,
                  frequency=100, start=None, grafting="adam", grafting_beta_2=0.999, grafting_epsilon=1e-8,
                  momentum=0.0, nesterov=False, merge_dims=False):
    start = start or frequency
    params = [np.asarray(p, np.float64) for p in init]
    state = []
    for p in params:
        shape = _shampoo_shape(p.shape, block, merge_dims)
        cuts = [list(range(0, n, block)) + [n] for n in shape]
        blocks = list(itertools.product(*[list(zip(c[:-1], c[1:])) for c in cuts]))
        state.append(dict(
            shape=shape, blocks=blocks, m=np.zeros(shape), v=np.zeros(shape), buf=np.zeros(shape),
            L=[[np.zeros((b - a, b - a)) for a, b in blk] for blk in blocks],
            X=[[np.eye(b - a) for a, b in blk] for blk in blocks],
        ))
    for t, step_grads in enumerate(grads, start=1):
        refresh = (t % frequency == 0 and t > start) or t == start
        for i, g in enumerate(step_grads):
            s = state[i]
            g = np.asarray(g, np.float64).reshape(s["shape"])
            w = params[i].reshape(s["shape"])
            slices = [tuple(slice(a, b) for a, b in blk) for blk in s["blocks"]]
            for k, sl in enumerate(slices):
                for d in range(len(s["shape"])):
                    s["L"][k][d] = (beta_2 * s["L"][k][d] + (1 - beta_2) * _mode(g[sl], d)) if beta_2 < 1 \
                        else s["L"][k][d] + _mode(g[sl], d)
                    if refresh:
                        corrected = s["L"][k][d] / (1 - beta_2 ** t) if beta_2 < 1 else s["L"][k][d]
                        s["X"][k][d] = _inverse_root(corrected, epsilon, 1 / (2 * len(s["shape"])))
            if grafting == "adagrad":
                s["v"] += g**2
            elif grafting in ("adam", "rmsprop"):
                s["v"] = grafting_beta_2 * s["v"] + (1 - grafting_beta_2) * g**2
            s["m"] = beta_1 * s["m"] + (1 - beta_1) * g
            g_bar = s["m"] / (1 - beta_1**t) if beta_1 > 0 else g
            if grafting == "adam":
                graft = g_bar / (np.sqrt(s["v"] / (1 - grafting_beta_2**t)) + grafting_epsilon)
            elif grafting in ("rmsprop", "adagrad"):
                graft = g_bar / (np.sqrt(s["v"]) + grafting_epsilon)
            else:
                graft = g_bar
            direction = np.empty_like(g)
            for k, sl in enumerate(slices):
                p = _apply_modes(g_bar[sl], s["X"][k])
                if grafting is not None:
                    p = p * np.linalg.norm(graft[sl]) / (np.linalg.norm(p) + 1e-16)
                direction[sl] = p
            if grafting is not None and t < start:
                direction = graft
            direction = direction + weight_decay * w
            if momentum:
                s["buf"] = momentum * s["buf"] + direction
                direction = direction + momentum * s["buf"] if nesterov else s["buf"]
            params[i] = (w - lr * direction).reshape(params[i].shape)
    return params


SHAMPOO_SHAPES = [(6, 4), (4,), (3, 3, 2, 4), (1, 5)]
SHAMPOO_CASES = {
    # Well-conditioned factors: their null-space eigenvalues are float32
    # rounding, so epsilon must dwarf it for float32 to meet the float64
    # transcription (at the default 1e-12 the rounding decides).
    "adam": dict(frequency=3, start=4, epsilon=1e-4, lr=1e-2),
    "blocks": dict(frequency=2, start=2, epsilon=1e-4, lr=1e-2, block=4),
    "rmsprop_momentum": dict(frequency=3, epsilon=1e-4, lr=1e-2, grafting="rmsprop", momentum=0.5, beta_1=0.0),
    "adagrad_nesterov_sum": dict(frequency=2, epsilon=1e-3, lr=1e-2, grafting="adagrad", momentum=0.5,
                                 nesterov=True, beta_2=1.0, weight_decay=0.1),
    "sgd": dict(frequency=2, epsilon=1e-3, lr=1e-2, grafting="sgd"),
    "none": dict(frequency=2, epsilon=1e-2, lr=1e-3, grafting=None),
    # Distributed Shampoo's merging: (6, 4) -> (24,), (3, 3, 2, 4) -> (72,),
    # factors of rank <= 12 after 12 steps, hence the larger epsilon.
    "merged": dict(frequency=3, start=4, epsilon=1e-2, lr=1e-2, merge_dims=True),
}
KERAS_NAMES = {"lr": "learning_rate", "frequency": "precondition_frequency", "start": "start_preconditioning_step",
               "block": "max_preconditioner_dim"}


@pytest.mark.parametrize("case", sorted(SHAMPOO_CASES))
def test_shampoo_matches_numpy_transcription(case):
    kwargs = SHAMPOO_CASES[case]
    init, grads = random_problem(12, seed=3, shapes=SHAMPOO_SHAPES)
    opt = kz.Shampoo(**{KERAS_NAMES.get(k, k): v for k, v in kwargs.items()})
    ours = run_keras_optimizer(opt, init, grads)
    reference = numpy_shampoo(init, grads, **kwargs)
    moved = max(np.max(np.abs(a - b)) for a, b in zip(reference, init))
    assert moved > 1e-3
    _assert_close(ours, reference, 2e-4)
    assert opt.failed_refreshes == 0


def test_shampoo_merges_blocks_and_squeezes_as_documented():
    shapes = [(1, 10, 3), (), (3, 3, 8, 16), (784, 500)]
    opt = kz.Shampoo(max_preconditioner_dim=4)
    opt.build([keras.Variable(np.zeros(s, "float32")) for s in shapes[:2]])
    sizes = [tuple(int(v.shape[0]) for v in opt.variables if f"shampoo_factor_{i}_" in v.path) for i in range(2)]
    assert sizes == [(4, 3, 4, 3, 2, 3), (1,)]  # (10, 3) in blocks 4/4/2 x 3; a scalar as (1,)
    opt = kz.Shampoo(merge_dims=True)  # max_preconditioner_dim 8192
    opt.build([keras.Variable(np.zeros(s, "float32")) for s in shapes])
    sizes = [tuple(int(v.shape[0]) for v in opt.variables if f"shampoo_factor_{i}_" in v.path) for i in range(4)]
    assert sizes == [(30,), (1,), (1152,), (784, 500)]


# -- the guard against a failed decomposition --------------------------------------
@pytest.mark.parametrize("cls", [kz.SOAP, kz.Shampoo], ids=lambda c: c.__name__)
def test_non_finite_factor_keeps_the_previous_basis_and_is_counted(cls):
    rng = np.random.default_rng(0)
    variables = [keras.Variable(rng.standard_normal((4, 3)).astype("float32"))]
    opt = cls(precondition_frequency=1, **({"start_preconditioning_step": 1} if cls is kz.Shampoo else {}))
    opt.build(variables)
    grads = lambda: [keras.ops.convert_to_tensor(rng.standard_normal((4, 3)).astype("float32"))]  # noqa: E731
    opt.apply(grads(), variables)
    opt.apply(grads(), variables)
    factor = [v for v in opt.variables if "factor_0_" in v.path][0]
    factor.assign(np.full(factor.shape, np.nan, "float32"))  # a factor gone bad
    for _ in range(3):
        opt.apply(grads(), variables)
    assert np.all(np.isfinite(keras.ops.convert_to_numpy(variables[0])))
    assert opt.failed_refreshes >= 3
    for v in opt.variables:
        if "basis" in v.path or "root" in v.path:
            assert np.all(np.isfinite(keras.ops.convert_to_numpy(v))), v.path


def test_factors_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4), keras.layers.Dense(1, dtype="float32")])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    rng = np.random.default_rng(0)
    for cls in (kz.SOAP, kz.Shampoo):
        clone = keras.models.clone_model(model)
        clone.compile(optimizer=cls(precondition_frequency=2, **({"start_preconditioning_step": 2}
                                                                 if cls is kz.Shampoo else {})), loss="mse")
        history = clone.fit(rng.standard_normal((64, 6)).astype("float32"), rng.standard_normal((64, 1)),
                            epochs=2, batch_size=16, verbose=0)
        assert np.all(np.isfinite(history.history["loss"]))
        dtypes = {keras.backend.standardize_dtype(v.dtype) for v in clone.optimizer.variables if v.ndim == 2}
        assert dtypes == {"float32"}


# -- through fit, jit and JAX's stateless_apply, equal to optimizer.apply ---------------
def _model(seed=0):
    keras.utils.set_random_seed(seed)
    # Every first-step factor has at most a one-dimensional null space (see
    # SOAP_SHAPES): a wider one makes SOAP's first basis depend on rounding.
    return keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Conv2D(3, 3, activation="tanh"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, activation="tanh"),
        keras.layers.Dense(3, activation="tanh"),
        keras.layers.Dense(2),
    ])


def _data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((48, 6, 6, 1)).astype("float32")
    return x, np.stack([x.mean(axis=(1, 2, 3)), x[:, :3, :3].mean(axis=(1, 2, 3))], axis=1) * 3


MAKERS = {
    "SOAP": lambda: kz.SOAP(1e-2, precondition_frequency=2),
    "Shampoo": lambda: kz.Shampoo(learning_rate=1e-2, precondition_frequency=2, epsilon=1e-4),
}


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_the_traced_step_equals_the_eager_one(name):
    """The same gradients through a compiled program (TensorFlow: XLA,
    `tf.function(jit_compile=True)` around `apply`; JAX: `jax.jit` of
    `stateless_apply`, what `fit` runs) and through eager `apply` steps (a
    custom loop). A model's own gradients differ in their last bits between
    compiled and eager runs, and SOAP's first steps (sign descent in the new
    basis) amplify that, so the optimizer is checked on fixed gradients."""
    if BACKEND == "torch":
        pytest.skip("torch runs the update eagerly in fit (no traced program to compare)")
    init, grads = random_problem(8, shapes=SOAP_SHAPES)
    eager = run_keras_optimizer(MAKERS[name](), init, grads)
    opt = MAKERS[name]()
    variables = [keras.Variable(x) for x in init]
    opt.build(variables)
    if BACKEND == "jax":
        import jax

        step = jax.jit(opt.stateless_apply)
        values, state = [v.value for v in variables], [v.value for v in opt.variables]
        for g in grads:
            values, state = step(state, [jax.numpy.asarray(x) for x in g], values)
        traced = [np.asarray(v) for v in values]
    else:
        import tensorflow as tf

        step = tf.function(lambda g: opt.apply(g, variables), jit_compile=True)
        for g in grads:
            step([tf.constant(x) for x in g])
        traced = [v.numpy() for v in variables]
    _assert_close(traced, eager, 1e-5)


@pytest.mark.parametrize("name", sorted(MAKERS))
@pytest.mark.parametrize("jit", [False, True], ids=["graph", "jit"])
def test_fit_trains(name, jit):
    if jit and BACKEND == "torch":
        pytest.skip("jit_compile on torch is torch.compile, not part of this library's paths")
    x, y = _data()
    model = _model()
    model.compile(optimizer=MAKERS[name](), loss="mse", jit_compile=jit)
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0).history["loss"]
    assert np.all(np.isfinite(history)) and history[-1] < 0.9 * history[0]
    assert model.optimizer.failed_refreshes == 0


@pytest.mark.parametrize("name", sorted(MAKERS))
def test_save_and_resume_exactly(name, tmp_path):
    x, y = _data()
    straight = _model()
    straight.compile(optimizer=MAKERS[name](), loss="mse")
    straight.fit(x, y, batch_size=16, epochs=4, shuffle=False, verbose=0)

    first = _model()
    first.compile(optimizer=MAKERS[name](), loss="mse")
    first.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    first.save(tmp_path / "m.keras")
    resumed = keras.saving.load_model(tmp_path / "m.keras")
    assert type(resumed.optimizer).__name__ == name
    resumed.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(straight.trainable_weights, resumed.trainable_weights):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6,
                                   atol=1e-7)


@pytest.mark.parametrize(
    "cls, kwargs, argument",
    [
        (kz.SOAP, {"precondition_frequency": 0}, "precondition_frequency"),
        (kz.SOAP, {"shampoo_beta": 1.0}, "shampoo_beta"),
        (kz.SOAP, {"max_precondition_dim": 2.5}, "max_precondition_dim"),
        (kz.Shampoo, {"grafting": "adamw"}, "grafting"),
        (kz.Shampoo, {"beta_2": 1.5}, "beta_2"),
        (kz.Shampoo, {"exponent_override": 0.0}, "exponent_override"),
        (kz.Shampoo, {"start_preconditioning_step": 0}, "start_preconditioning_step"),
    ],
)
def test_bad_hyperparameters_name_the_argument(cls, kwargs, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        cls(**kwargs)
