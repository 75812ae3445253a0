"""The with_curvature train step on every backend: the curvature of the step's
own loss (Dropout masks, BatchNormalization), compile settings kept,
Levenberg-Marquardt Newton, Gauss-Newton products, preconditioned CG,
clipping of the Newton step, Sophia-G, and sparse (Embedding) gradients."""

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from conftest import BACKEND, PlainNormalization
from keras_optzoo import backend
from keras_optzoo.curvature.estimators import conjugate_gradient
from keras_optzoo.curvature.update import probes
from keras_optzoo.tasks import mnist

SECOND = {
    "hybrid_4_probes": lambda lr: kz.Hybrid(lr, num_probes=4),
    "adahessian": lambda lr: kz.AdaHessian(lr),
    "sophiah_k1": lambda lr: kz.SophiaH(lr, hessian_update_interval=1),
    "sophiag_k1": lambda lr: kz.SophiaG(lr, hessian_update_interval=1),
    "newton_diagonal": lambda lr: kz.Newton(lr, num_probes=2),
    "newton_cg": lambda lr: kz.Newton(lr, method="cg", cg_iterations=3),
    "newton_ggn": lambda lr: kz.Newton(lr, method="cg", curvature="ggn", cg_iterations=3),
}


def _data(n=64, features=6, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype("float32"), rng.integers(0, classes, n).astype("int32")


def _bn_dropout_model():
    return keras.Sequential([
        keras.Input((6,)), keras.layers.Dense(8), keras.layers.BatchNormalization(momentum=0.5),
        keras.layers.ReLU(), keras.layers.Dropout(0.3), keras.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip


def _moving_stats(model):
    bn = next(layer for layer in model.model.layers if isinstance(layer, keras.layers.BatchNormalization))
    return [keras.ops.convert_to_numpy(v) for v in (bn.moving_mean, bn.moving_variance)]


@pytest.mark.parametrize("name", ["hybrid_4_probes", "sophiag_k1", "newton_cg", "newton_ggn"])
def test_moving_statistics_are_updated_once_per_step(name):
    """At lr 0 the weights stay put, so after N steps the moving statistics of
    a second-order run must equal those of plain SGD from the same start."""
    x, y = _data()
    runs = []
    for make in (lambda: keras.optimizers.SGD(0.0), lambda: SECOND[name](0.0)):
        keras.utils.set_random_seed(3)
        model = kz.with_curvature(_bn_dropout_model())
        model.compile(optimizer=make(), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        runs.append(_moving_stats(model))
    for got, want in zip(runs[1], runs[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_curvature_of_a_dropout_step_uses_the_steps_mask():
    """The Hutchinson estimate written by one step equals z * (H z) of the same
    network with that step's dropout mask fixed (an independent model: the
    mask as a constant multiply), at the same probe z."""
    x, y = _data(16)
    keras.utils.set_random_seed(5)
    dropout = keras.layers.Dropout(0.5, seed=11)
    base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), dropout,
                             keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    model = kz.with_curvature(base)
    opt = kz.Hybrid(0.0)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    state = keras.ops.convert_to_numpy(dropout.seed_generator.state)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    # The step's mask: the same dropout layer from the same seed state, on ones.
    dropout.seed_generator.state.assign(state)
    mask = keras.ops.convert_to_numpy(dropout(np.ones((16, 5), "float32"), training=True))
    assert 0 < (mask == 0).mean() < 1
    mask = keras.ops.convert_to_tensor(mask)
    fixed = keras.Sequential([keras.Input((6,)), base.layers[0], keras.layers.Lambda(lambda h: h * mask),
                              base.layers[2]])  # fmt: skip
    hessian = kz.curvature.Hessian(fixed, keras.losses.SparseCategoricalCrossentropy(), x, y)
    z = probes(opt.curvature_request(), base.trainable_variables, 0)[0]
    expected = [keras.ops.convert_to_numpy(zi * hz) for zi, hz in zip(z, hessian.hvp(z))]
    for slot, want in zip(opt.curvature_slots(), expected):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(slot), want, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("interval", [1, 2], ids=["step_pass", "re_evaluated"])
def test_curvature_of_a_batchnorm_step_is_the_hessian_of_its_batch_statistics(interval):
    """The Hutchinson estimate of a step through BatchNormalization (training
    mode: statistics of the batch) equals z * (H z) of the same network with
    the normalization written out in plain ops. TensorFlow's own moments stop
    the gradient inside the variance, which left this Hessian 50 % off."""
    x, y = _data(32)
    keras.utils.set_random_seed(3)
    bn = keras.layers.BatchNormalization()
    base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), bn, keras.layers.Activation("tanh"),
                             keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    model = kz.with_curvature(base)
    opt = kz.Hybrid(0.0, hessian_update_interval=interval)
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    plain = keras.Sequential([keras.Input((6,)), base.layers[0], PlainNormalization(bn, axis=0), base.layers[2],
                              base.layers[3]])  # fmt: skip
    assert [v.path for v in plain.trainable_variables] == [v.path for v in base.trainable_variables]
    hessian = kz.curvature.Hessian(plain, keras.losses.SparseCategoricalCrossentropy(), x, y)
    z = probes(opt.curvature_request(), base.trainable_variables, 0)[0]
    expected = [keras.ops.convert_to_numpy(zi * hz) for zi, hz in zip(z, hessian.hvp(z))]
    for slot, want, v in zip(opt.curvature_slots(), expected, base.trainable_variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(slot), want, rtol=1e-3, atol=1e-5, err_msg=v.path)


@pytest.mark.parametrize("skip_nonfinite", [False, True])
@pytest.mark.parametrize("make", [kz.SophiaH, kz.Newton], ids=["sophiah", "newton_diagonal"])
def test_refreshes_land_on_every_kth_step_across_fit_calls_and_train_on_batch(make, skip_nonfinite, tmp_path):
    """Interval 3: the estimate is rewritten at steps 0, 3, 6, ... however the
    steps arrive (`fit` calls, `train_on_batch` between them, several steps
    per execution where the backend has them, saved state loaded back). Each
    batch is a constant c, so the exact Hutchinson estimate of MSE(c w, 0) in
    the scalar w is 2 c^2 and the slot names the step that last refreshed it
    (Newton's diagonal: its last slot, D, beside the direction it computes
    every step)."""
    model = kz.with_curvature(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)]))
    opt = make(1e-6, hessian_update_interval=3, skip_nonfinite=skip_nonfinite)
    model.compile(optimizer=opt, loss="mse", steps_per_execution=1 if BACKEND == "torch" else 2)
    batches = lambda first, count: np.repeat(np.arange(first, first + count, dtype="float32") + 1, 4)[:, None]  # noqa: E731
    slot = lambda: float(keras.ops.convert_to_numpy(opt.curvature_slots()[-1])[0, 0])  # noqa: E731
    x = batches(0, 5)  # steps 0-4: refreshes at 0 and 3 (c = 4)
    model.fit(x, np.zeros_like(x), batch_size=4, shuffle=False, verbose=0)
    assert slot() == pytest.approx(2 * 4.0**2)
    x = batches(5, 1)  # step 5: none
    model.train_on_batch(x, np.zeros_like(x))
    assert slot() == pytest.approx(2 * 4.0**2)
    model.save_weights(tmp_path / "after_6_steps.weights.h5")  # with the optimizer's state
    x = batches(6, 3)  # steps 6-8: refresh at 6 (c = 7)
    model.fit(x, np.zeros_like(x), batch_size=4, shuffle=False, verbose=0)
    assert slot() == pytest.approx(2 * 7.0**2)
    x = batches(9, 2)  # steps 9, 10: refresh at 9 (c = 10)
    model.fit(x, np.zeros_like(x), batch_size=4, shuffle=False, verbose=0)
    assert slot() == pytest.approx(2 * 10.0**2)
    assert int(keras.ops.convert_to_numpy(opt.iterations)) == 11
    model.load_weights(tmp_path / "after_6_steps.weights.h5")  # back to step 6: steps 6-8, refresh at 6 (c = 13)
    assert int(keras.ops.convert_to_numpy(opt.iterations)) == 6
    x = batches(12, 3)
    model.fit(x, np.zeros_like(x), batch_size=4, shuffle=False, verbose=0)
    assert slot() == pytest.approx(2 * 13.0**2)


def test_with_curvature_keeps_every_compile_setting():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")])
    opt = kz.Hybrid()
    settings = dict(
        loss="sparse_categorical_crossentropy", loss_weights=[0.5], metrics=["accuracy"],
        weighted_metrics=["sparse_categorical_accuracy"], run_eagerly=BACKEND == "tensorflow",
        steps_per_execution=1 if BACKEND == "torch" else 3, jit_compile=False,  # torch: 1 only
    )  # fmt: skip
    model.compile(optimizer=opt, **settings)
    wrapped = kz.with_curvature(model)
    assert wrapped.optimizer is opt
    assert wrapped.steps_per_execution == settings["steps_per_execution"] and wrapped.jit_compile is False
    assert wrapped.run_eagerly == settings["run_eagerly"]
    config = wrapped.get_compile_config()
    for key in ("loss", "loss_weights", "metrics", "weighted_metrics"):
        assert config[key] == model.get_compile_config()[key], key
    x, y = _data(32)
    history = wrapped.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert {"loss", "accuracy", "sparse_categorical_accuracy"} <= set(history)
    plain = keras.losses.SparseCategoricalCrossentropy()(y, model.predict(x, verbose=0))
    np.testing.assert_allclose(wrapped.evaluate(x, y, verbose=0, return_dict=True)["loss"],
                               0.5 * float(plain), rtol=1e-5)  # fmt: skip


# -- Newton: Levenberg-Marquardt, Gauss-Newton, preconditioned CG, clipping ----


def _fit_weight(loss, opt, dim, steps, init):
    """theta in a Dense(1, no bias) on the identity, trained `steps` full-batch steps."""
    model = kz.with_curvature(keras.Sequential([keras.Input((dim,)), keras.layers.Dense(1, use_bias=False)]))
    model.compile(optimizer=opt, loss=loss)
    model.model.layers[0].kernel.assign(np.asarray(init, "float32").reshape(dim, 1))
    model.fit(np.eye(dim, dtype="float32"), np.zeros((dim, 1), "float32"), batch_size=dim, epochs=steps,
              shuffle=False, verbose=0)  # fmt: skip
    return keras.ops.convert_to_numpy(model.model.layers[0].kernel)[:, 0]


def test_levenberg_marquardt_lowers_damping_on_a_quadratic():
    """On a quadratic the model is exact: rho = 1 every step, so lambda * 2/3."""
    a = np.linspace(1.0, 4.0, 4).astype("float32")

    def loss(_, w):
        return 0.5 * keras.ops.sum(keras.ops.convert_to_tensor(a)[:, None] * w * w) - keras.ops.sum(w)

    opt = kz.Newton(1.0, damping=1.0)
    w = _fit_weight(loss, opt, 4, 3, np.zeros(4))
    np.testing.assert_allclose(opt.damping_value, (2.0 / 3.0) ** 3, rtol=1e-5)
    expected = np.zeros(4)
    for lam in (1.0, 2.0 / 3.0, 4.0 / 9.0):  # each step d = g / (a + lambda), g = a w - 1
        expected = expected - (a * expected - 1.0) / (a + lam)
    np.testing.assert_allclose(w, expected, rtol=1e-5)


def test_levenberg_marquardt_rejects_a_step_that_raises_the_loss():
    """Pseudo-Huber sum sqrt(1 + w^2) from w = 3: the undamped Newton step
    w (1 + w^2) = 30 overshoots to -27; it is not taken and lambda grows 3/2."""

    def loss(_, w):
        return keras.ops.sum(keras.ops.sqrt(1.0 + w * w))

    opt = kz.Newton(1.0, damping=1e-4, num_probes=1)
    w = _fit_weight(loss, opt, 1, 1, [3.0])
    np.testing.assert_allclose(w, [3.0])
    np.testing.assert_allclose(opt.damping_value, 1.5e-4, rtol=1e-5)


def test_gauss_newton_cg_equals_least_squares_on_a_linear_model():
    """A Dense model with squared error: the GGN is the Hessian X^T X * 2/n, so
    n CG steps on it give the least-squares solution."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 5)).astype("float32")
    y = (x @ rng.standard_normal(5) + 0.1 * rng.standard_normal(32)).astype("float32")[:, None]
    model = kz.with_curvature(keras.Sequential([keras.Input((5,)), keras.layers.Dense(1, use_bias=False)]))
    model.compile(optimizer=kz.Newton(1.0, method="cg", curvature="ggn", damping=1e-6, adaptive_damping=False,
                                      precondition=False, cg_iterations=5), loss="mse")  # fmt: skip
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0)
    want = np.linalg.lstsq(x.astype("f8"), y[:, 0].astype("f8"), rcond=None)[0]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.model.layers[0].kernel)[:, 0], want, atol=2e-4)


def test_preconditioned_cg_solves_spd_system():
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a = (q * np.logspace(0, 2, 6)) @ q.T
    b = rng.standard_normal(6)
    a_t = keras.ops.convert_to_tensor(a.astype("float32"))

    def hvp(vs):
        return [keras.ops.matmul(a_t, vs[0])]

    m = [keras.ops.convert_to_tensor(np.abs(np.diag(a)).astype("float32") + 0.5)]
    (x,), (r,) = conjugate_gradient(hvp, [keras.ops.convert_to_tensor(b.astype("float32"))], 0.5, 6, m)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(x), np.linalg.solve(a + 0.5 * np.eye(6), b), rtol=1e-3)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(r), 0.0, atol=1e-3)


@pytest.mark.parametrize("clip", [{"clipnorm": 0.05}, {"global_clipnorm": 0.05}])
def test_clipping_applies_to_the_newton_step(clip):
    x, y = _data(32)
    model = kz.with_curvature(keras.Sequential([keras.Input((6,)), keras.layers.Dense(3, activation="softmax")]))
    model.compile(optimizer=kz.Newton(1.0, method="cg", damping=1e-3, adaptive_damping=False, **clip),
                  loss="sparse_categorical_crossentropy")  # fmt: skip
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    steps = [keras.ops.convert_to_numpy(v) - b for v, b in zip(model.trainable_variables, before)]
    norms = [np.linalg.norm(s) for s in steps]
    total = np.sqrt(sum(n**2 for n in norms))
    assert (max(norms) if "clipnorm" in clip else total) == pytest.approx(0.05, rel=1e-3)


# -- Sophia-G ---------------------------------------------------------------------


def test_sophia_g_trajectory_on_logistic_regression():
    """Logistic regression: the gradient at labels s is X^T (p - s) / n in
    closed form; labels are drawn as s = 1[u < p] from the step's uniform
    numbers. The whole SophiaG trajectory against NumPy."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 3)).astype("float32")
    y = rng.integers(0, 2, (8, 1)).astype("float32")
    cfg = dict(learning_rate=0.05, beta_1=0.9, beta_2=0.8, gamma=0.5, epsilon=1e-12, seed=3)
    model = kz.with_curvature(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")]))
    model.compile(optimizer=kz.SophiaG(hessian_update_interval=1, **cfg), loss="binary_crossentropy")
    w = rng.standard_normal(3) * 0.3
    model.model.layers[0].kernel.assign(w[:, None].astype("float32"))
    w, b = w.astype("f8"), 0.0
    m, h = np.zeros(4), np.zeros(4)
    for step in range(4):
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))[:, None]
        u = keras.ops.convert_to_numpy(backend.uniform(keras.ops.convert_to_tensor(p.astype("float32")), 3, step))
        s = (np.clip(u, 1e-7, 1 - 1e-7) < p).astype("f8")
        xb = np.hstack([x, np.ones((8, 1))])
        g = xb.T @ (p - y)[:, 0] / 8
        g_hat = xb.T @ (p - s)[:, 0] / 8
        m = cfg["beta_1"] * m + (1 - cfg["beta_1"]) * g
        h = cfg["beta_2"] * h + (1 - cfg["beta_2"]) * 8 * g_hat**2
        theta = np.append(w, b) - cfg["learning_rate"] * np.clip(m / np.maximum(cfg["gamma"] * h, 1e-12), -1, 1)
        w, b = theta[:3], theta[3]
    dense = model.model.layers[0]
    got = np.append(keras.ops.convert_to_numpy(dense.kernel)[:, 0], keras.ops.convert_to_numpy(dense.bias))
    np.testing.assert_allclose(got, np.append(w, b), rtol=1e-4, atol=1e-5)


def test_sophia_g_needs_a_crossentropy_loss():
    model = kz.with_curvature(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
    model.compile(optimizer=kz.SophiaG(), loss="mse")
    with pytest.raises(ValueError, match="loss='mse'.*SophiaH"):
        model.fit(np.ones((4, 3), "float32"), np.ones((4, 1), "float32"), verbose=0)


# -- sparse gradients: Embedding + LSTM text classification -------------------


@pytest.fixture(scope="module")
def digit_tokens():
    """MNIST as text: each image downsampled to 7x7 and its pixels quantized to
    16 intensity tokens, a 49-token sequence per digit."""
    (x, y), _ = mnist.load_embedded()
    x = x[:128].reshape(-1, 7, 4, 7, 4).mean(axis=(2, 4)).reshape(-1, 49)
    return np.minimum((x * 16).astype("int32"), 15), y[:128]


def _text_model(recurrent):
    """Embedding, then an LSTM (or an average over the sequence), then logits."""
    middle = keras.layers.LSTM(8) if recurrent else keras.layers.GlobalAveragePooling1D()
    return keras.Sequential([keras.Input((49,), dtype="int32"), keras.layers.Embedding(16, 8), middle,
                             keras.layers.Dense(10)])  # fmt: skip


LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.mark.parametrize(
    "name, recurrent",
    [(name, False) for name in sorted(SECOND)] + [("hybrid_4_probes", True), ("sophiag_k1", True)],
)
def test_embedding_models_train_with_every_second_order_optimizer(name, recurrent, digit_tokens):
    x, y = digit_tokens
    keras.utils.set_random_seed(0)
    model = kz.with_curvature(_text_model(recurrent))
    lr = {"adahessian": 0.05, "newton_diagonal": 0.3, "newton_cg": 0.3, "newton_ggn": 0.3}.get(name, 0.01)
    model.compile(optimizer=SECOND[name](lr), loss=LOGITS)
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, batch_size=64, epochs=1 if recurrent else 2, verbose=0)
    after = model.evaluate(x, y, verbose=0)
    assert np.isfinite(after) and after < before, (before, after)


def test_curvature_functions_on_an_embedding_model(digit_tokens):
    """HVP of an Embedding model against central differences of its gradient."""
    x, y = digit_tokens
    x, y = x[:32], y[:32]
    keras.utils.set_random_seed(0)
    model = _text_model(recurrent=True)
    hessian = kz.curvature.Hessian(model, LOGITS, x, y)
    rng = np.random.default_rng(0)
    v = [rng.standard_normal(tuple(w.shape)).astype("float32") for w in model.trainable_variables]
    hv = [keras.ops.convert_to_numpy(h) for h in hessian.hvp(v)]
    start = [keras.ops.convert_to_numpy(w) for w in model.trainable_variables]
    eps, grads = 1e-2, []
    for sign in (1, -1):
        for w, s, d in zip(model.trainable_variables, start, v):
            w.assign(s + sign * eps * d)
        grads.append([keras.ops.convert_to_numpy(g) for g in hessian.gradient()])
    for w, s in zip(model.trainable_variables, start):
        w.assign(s)
    fd = np.concatenate([((a - b) / (2 * eps)).ravel() for a, b in zip(*grads)])
    got = np.concatenate([h.ravel() for h in hv])
    assert np.linalg.norm(got - fd) < 0.02 * np.linalg.norm(fd)
    assert hessian.trace(num_probes=2) == pytest.approx(hessian.trace(num_probes=2))  # runs, deterministic
    assert all(np.isfinite(keras.ops.convert_to_numpy(d)).all() for d in hessian.diagonal(num_probes=1))


def test_newtons_damping_ratio_is_measured_with_the_steps_dropout_mask():
    """One weight, MSE, an unseeded Dropout before it: for a fixed mask the
    loss is exactly quadratic and its 1 x 1 Hessian is what one Rademacher
    probe returns, so the Levenberg-Marquardt ratio is exactly 1 and the
    damping shrinks by 2/3 every step: (2/3)^5 after 5 steps. If the loss
    after the step saw another mask (Keras's torch Dropout without a seed
    draws from torch's global generator), the ratio is noise."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.5, 1.5, (64, 1)).astype("float32")
    y = (3.0 * x).astype("float32")
    base = keras.Sequential([keras.Input((1,)), keras.layers.Dropout(0.5), keras.layers.Dense(1, use_bias=False)])
    model = kz.with_curvature(base)
    opt = kz.Newton(0.1, damping=1.0)
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, batch_size=64, epochs=5, shuffle=False, verbose=0)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(opt.damping_value)), (2 / 3) ** 5, rtol=1e-4)
