"""Second-order optimizers: exact updates for a given curvature, Newton on
quadratics, training through `with_curvature`, and the unwrapped-model error."""

import contextlib

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from conftest import BACKEND, slow_on
from keras_optzoo.optimizers.second_order import WRAP_MESSAGE
from keras_optzoo.tasks import mnist

# -- the update equations, given the curvature -------------------------------

SHAPES = [(), (5,), (3, 3, 2, 4)]  # the last is a Conv2D kernel: AdaHessian averages its 3x3 axes


def _numpy_run(name, cfg, init, grads, curv, interval):
    th = [v.astype("f8") for v in init]
    state = [dict(m=np.zeros_like(t), v=np.zeros_like(t), h=np.zeros_like(t)) for t in th]
    for t, (gs, ds) in enumerate(zip(grads, curv), start=1):
        refresh = (t - 1) % interval == 0
        r = (t - 1) // interval + 1
        for i, (g, d) in enumerate(zip(gs, ds)):
            s, lr = state[i], cfg["learning_rate"]
            if name == "newton":
                th[i] = th[i] - lr * g / (np.abs(d) + cfg["damping"])
            elif name == "hybrid":
                b1, b2, b3, l2 = cfg["beta_1"], cfg["beta_2"], cfg["beta_3"], cfg["l2"]
                g = g + l2 * th[i]
                s["m"] = b1 * s["m"] + (1 - b1) * g
                s["v"] = b2 * s["v"] + (1 - b2) * g * g
                if refresh:
                    s["h"] = b3 * s["h"] + (1 - b3) * np.abs(d + l2)
                den = np.maximum(np.sqrt(s["v"] / (1 - b2**t)), s["h"] / (1 - b3**r)) + cfg["epsilon"]
                th[i] = th[i] - lr * (s["m"] / (1 - b1**t)) / den
            elif name == "adahessian":
                b1, b2 = cfg["beta_1"], cfg["beta_2"]
                ds_ = np.abs(d)
                if ds_.ndim > 2:
                    ds_ = np.broadcast_to(ds_.mean(axis=(0, 1), keepdims=True), ds_.shape)
                s["m"] = b1 * s["m"] + (1 - b1) * g
                if refresh:
                    s["v"] = b2 * s["v"] + (1 - b2) * ds_**2
                den = np.sqrt(s["v"] / (1 - b2**r)) ** cfg["hessian_power"] + cfg["epsilon"]
                lr = lr * min(1.0, t / cfg["warmup_steps"]) if cfg["warmup_steps"] else lr  # the linear warm-up
                th[i] = th[i] - lr * (s["m"] / (1 - b1**t)) / den
            elif name == "sophiah":
                b1, b2 = cfg["beta_1"], cfg["beta_2"]
                s["m"] = b1 * s["m"] + (1 - b1) * g
                if refresh:
                    s["h"] = b2 * s["h"] + (1 - b2) * d
                ratio = s["m"] / np.maximum(cfg["gamma"] * s["h"], cfg["epsilon"])
                th[i] = th[i] - lr * np.clip(ratio, -1, 1)
    return th


CONFIGS = {
    "newton": (kz.Newton, dict(learning_rate=0.5, damping=0.3)),
    "hybrid": (kz.Hybrid, dict(learning_rate=0.05, beta_1=0.8, beta_2=0.95, beta_3=0.7, epsilon=1e-7, l2=0.01)),
    "adahessian": (kz.AdaHessian, dict(learning_rate=0.15, beta_1=0.9, beta_2=0.99, epsilon=1e-4, hessian_power=0.5,
                                         warmup_steps=4)),
    "sophiah": (kz.SophiaH, dict(learning_rate=0.02, beta_1=0.965, beta_2=0.9, gamma=0.5, epsilon=1e-12)),
}


@pytest.mark.parametrize("interval", [1, 3])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_update_matches_docstring_equations_for_given_curvature(name, interval):
    cls, cfg = CONFIGS[name]
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype("float32") for s in SHAPES]
    grads = [[rng.standard_normal(s).astype("float32") for s in SHAPES] for _ in range(7)]
    curv = [[rng.standard_normal(s).astype("float32") for s in SHAPES] for _ in range(7)]
    opt = cls(hessian_update_interval=interval, **cfg)
    variables = [keras.Variable(v) for v in init]
    opt.build(variables)
    for gs, ds in zip(grads, curv):
        opt.set_curvature([keras.ops.convert_to_tensor(d) for d in ds])
        opt.apply([keras.ops.convert_to_tensor(g) for g in gs], variables)
    expected = _numpy_run(name, cfg, init, grads, curv, interval)
    for got, want in zip(variables, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name", ["adahessian", "hybrid", "sophiah"])
def test_updates_built_under_no_refresh_match_the_equations(name, fused):
    """A train step that knows a step does not refresh (JAX's plain program,
    TensorFlow's non-refresh branch, whose kernels then neither read the
    curvature nor write its average) builds its update under `no_refresh()`:
    the numbers are still the equations' (interval 3, the non-refresh steps
    under it)."""
    cls, cfg = CONFIGS[name]
    rng = np.random.default_rng(1)
    init = [rng.standard_normal(s).astype("float32") for s in SHAPES]
    grads = [[rng.standard_normal(s).astype("float32") for s in SHAPES] for _ in range(7)]
    curv = [[rng.standard_normal(s).astype("float32") for s in SHAPES] for _ in range(7)]
    opt = cls(hessian_update_interval=3, fused=fused, **cfg)
    variables = [keras.Variable(v) for v in init]
    opt.build(variables)
    for step, (gs, ds) in enumerate(zip(grads, curv)):
        opt.set_curvature([keras.ops.convert_to_tensor(d) for d in ds])
        with opt.no_refresh() if step % 3 else contextlib.nullcontext():
            opt.apply([keras.ops.convert_to_tensor(g) for g in gs], variables)
    expected = _numpy_run(name, cfg, init, grads, curv, 3)
    for got, want in zip(variables, expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-5, atol=1e-6)


# -- Newton on quadratics, through with_curvature + fit -----------------------


def _quadratic_model(a, b):
    """Dense(1, no bias) on the identity returns w; loss 0.5 w^T A w - b^T w."""
    model = kz.with_curvature(keras.Sequential([keras.Input((len(a),)), keras.layers.Dense(1, use_bias=False)]))
    a_t, b_t = keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(b[:, None])

    def loss(y_true, w):
        return 0.5 * keras.ops.sum(w * keras.ops.matmul(a_t, w)) - keras.ops.sum(b_t * w)

    return model, loss


def test_newton_diagonal_solves_separable_quadratic_in_one_step():
    a = np.diag(np.linspace(0.5, 20.0, 8)).astype("float32")
    b = np.linspace(-1.0, 1.0, 8).astype("float32")
    model, loss = _quadratic_model(a, b)
    model.compile(optimizer=kz.Newton(1.0, method="diagonal", damping=1e-9), loss=loss)
    model.fit(np.eye(8, dtype="float32"), np.zeros((8, 1), "float32"), batch_size=8, epochs=1, shuffle=False, verbose=0)
    w = keras.ops.convert_to_numpy(model.trainable_variables[0])[:, 0]
    np.testing.assert_allclose(w, b / np.diag(a), rtol=1e-5, atol=1e-6)


def test_newton_cg_solves_spd_quadratic_in_n_iterations():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    a = ((q * np.linspace(1.0, 10.0, 8)) @ q.T).astype("float32")
    b = rng.standard_normal(8).astype("float32")
    model, loss = _quadratic_model(a, b)
    model.compile(optimizer=kz.Newton(1.0, method="cg", damping=1e-9, cg_iterations=8, precondition=False), loss=loss)
    model.fit(np.eye(8, dtype="float32"), np.zeros((8, 1), "float32"), batch_size=8, epochs=1, shuffle=False, verbose=0)
    w = keras.ops.convert_to_numpy(model.trainable_variables[0])[:, 0]
    np.testing.assert_allclose(w, np.linalg.solve(a.astype("f8"), b), atol=1e-5)


# -- real training ------------------------------------------------------------

TRAINING = {
    "newton_diagonal": lambda: kz.Newton(0.2, damping=1.0, num_probes=2),
    "newton_cg": lambda: kz.Newton(0.3, method="cg", damping=1.0, cg_iterations=5),
    "hybrid": lambda: kz.Hybrid(0.005),
    "adahessian": lambda: kz.AdaHessian(0.02),
    "sophiah": lambda: kz.SophiaH(0.002, hessian_update_interval=5),
    "sophiag": lambda: kz.SophiaG(0.002, hessian_update_interval=5),
}
JIT = [False] + ([True] if BACKEND in ("tensorflow", "jax") else [])


@pytest.fixture(scope="module")
def mnist_small():
    (x, y), (xt, yt) = mnist.load_embedded()
    return x[:1024], y[:1024], xt[:1000], yt[:1000]


# JAX without jit_compile runs the curvature step op by op (10-27 s a case);
# there the MLP repeats the logistic model's path, which stays in the run.
@pytest.mark.parametrize(
    "name, arch, jit_compile",
    [pytest.param(name, arch, jit, id=f"{name}-{arch}-{jit}",
                  marks=slow_on("jax") if arch == "mlp" and not jit else ())
     for name in sorted(TRAINING) for arch in ("logistic", "mlp") for jit in JIT],
)
def test_reduces_mnist_loss(name, arch, jit_compile, mnist_small):
    x, y, xt, yt = mnist_small
    keras.utils.set_random_seed(0)
    if arch == "logistic":
        base = mnist.logistic_regression()
    else:
        base = keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
                                 keras.layers.Dense(10, activation="softmax")])
    model = kz.with_curvature(base)
    model.compile(optimizer=TRAINING[name](), loss="sparse_categorical_crossentropy", jit_compile=jit_compile)
    before = model.evaluate(xt, yt, verbose=0)
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    after = model.evaluate(xt, yt, verbose=0)
    assert np.isfinite(after) and after < 0.8 * before, (before, after)


@pytest.mark.parametrize("cls", kz.optimizers.SECOND_ORDER)
def test_unwrapped_model_raises_the_documented_error(cls, mnist_small):
    x, y, _, _ = mnist_small
    model = mnist.logistic_regression()
    model.compile(optimizer=cls(), loss="sparse_categorical_crossentropy")
    with pytest.raises(RuntimeError, match="keras_optzoo.with_curvature") as info:
        model.fit(x[:64], y[:64], epochs=1, verbose=0)
    assert str(info.value).startswith(WRAP_MESSAGE.format(name=cls.__name__)[:40])


# -- with_curvature: model kinds and saving -----------------------------------


@keras.saving.register_keras_serializable(package="tests")
class SubclassedMLP(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(16, activation="tanh")
        self.out = keras.layers.Dense(10, activation="softmax")

    def call(self, x):
        return self.out(self.hidden(x))


def _functional():
    inputs = keras.Input((784,))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Dense(16)(inputs)))


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_with_curvature_model_kinds_share_weights_and_save(kind, mnist_small, tmp_path):
    x, y, xt, yt = mnist_small
    keras.utils.set_random_seed(1)
    base = {"sequential": lambda: keras.Sequential([keras.Input((784,)), keras.layers.Dense(16),
                                                   keras.layers.Dense(10, activation="softmax")]),
            "functional": _functional, "subclassed": SubclassedMLP}[kind]()
    model = kz.with_curvature(base)
    model.compile(optimizer=kz.Hybrid(0.005, hessian_update_interval=2), loss="sparse_categorical_crossentropy")
    model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    np.testing.assert_array_equal(base.predict(xt[:5], verbose=0), model.predict(xt[:5], verbose=0))
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is kz.Hybrid and loaded.optimizer.hessian_update_interval == 2
    np.testing.assert_allclose(loaded.predict(xt[:5], verbose=0), model.predict(xt[:5], verbose=0), rtol=1e-6)
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    loaded.fit(x[:128], y[:128], batch_size=64, epochs=1, verbose=0)  # and it resumes


@pytest.mark.parametrize(
    "make, word",
    [
        (lambda: kz.Newton(damping=0.0), "damping"),
        (lambda: kz.Newton(damping=float("nan")), "damping"),
        (lambda: kz.Hybrid(hessian_update_interval=0), "hessian_update_interval"),
        (lambda: kz.SophiaH(num_probes=0), "num_probes"),
        (lambda: kz.AdaHessian(hessian_power=1.5), "hessian_power"),
        (lambda: kz.AdaHessian(warmup_steps=-1), "warmup_steps"),
        (lambda: kz.AdaHessian(warmup_steps=2.5), "warmup_steps"),
        (lambda: kz.Newton(method="bfgs"), "method"),
        (lambda: kz.Newton(curvature="fisher"), "curvature"),
        (lambda: kz.Newton(adaptive_damping=1), "adaptive_damping"),
        (lambda: kz.Newton(precondition="yes"), "precondition"),
        (lambda: kz.SophiaG(gamma=0.0), "gamma"),
        (lambda: kz.Newton(method="cg", hessian_update_interval=5), "hessian_update_interval"),
        (lambda: kz.Hybrid(beta_3=1.0), "beta_3"),
        (lambda: kz.SophiaH(gamma=-1.0), "gamma"),
        (lambda: kz.Hybrid(gradient_accumulation_steps=2), "gradient_accumulation_steps"),
    ],
)
def test_bad_second_order_arguments(make, word):
    with pytest.raises((ValueError, TypeError), match=word):
        make()


def test_newtons_default_learning_rate_depends_on_the_method_and_survives_serialization():
    """None means a full step for the diagonal method, half of the CG direction
    (docs/defaults.md); a rate the user gives is kept, and from_config restores it."""
    rate = lambda opt: float(keras.ops.convert_to_numpy(opt.learning_rate))  # noqa: E731
    assert rate(kz.Newton()) == 1.0
    assert rate(kz.Newton(method="cg")) == 0.5
    assert rate(kz.Newton(0.2, method="cg")) == pytest.approx(0.2)
    restored = kz.Newton.from_config(kz.Newton(method="cg").get_config())
    assert restored.method == "cg" and rate(restored) == 0.5
