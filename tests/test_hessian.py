"""The public `keras_optzoo.curvature.Hessian` object against the float64
NumPy Hessian of test_curvature, and the second-order optimizer contract."""

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from conftest import BACKEND, PlainNormalization
from keras_optzoo.curvature import Hessian
from test_curvature import L2, _data, _exact_hessian, _flat, _mlp

LOSS = "sparse_categorical_crossentropy"


def test_hessian_object_follows_the_weights_and_matches_numpy():
    """One object, two weight settings: every method evaluates at the weights
    of the moment it is called."""
    model = _mlp()
    x, y = _data()
    h = Hessian(model, LOSS, x, y)
    rng = np.random.default_rng(7)
    v = [rng.standard_normal(tuple(w.shape)).astype("float32") for w in model.trainable_variables]
    for _ in range(2):
        hess, _ = _exact_hessian(model, x, y)
        np.testing.assert_allclose(_flat(h.hvp(v)), hess @ _flat(v), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(h.top_eigenvalues(k=2), np.sort(np.linalg.eigvalsh(hess))[::-1][:2], rtol=1e-3)
        stats = h.statistics(k=1, num_probes=4, lanczos_iterations=31)
        np.testing.assert_allclose(stats["top_eigenvalues"][0], np.max(np.linalg.eigvalsh(hess)), rtol=1e-3)
        for w in model.trainable_variables:  # move the weights
            w.assign(w * 0.5 + 0.1)


def test_hessian_of_a_layer_norm_model_is_that_of_its_plain_ops():
    """Normalization statistics have the second derivatives of their formula
    on every backend (TensorFlow's own moments stop the gradient inside the
    variance; the Hessian programs use exact ones)."""
    x, y = _data()
    keras.utils.set_random_seed(4)
    norm = keras.layers.LayerNormalization()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(6), norm,
                              keras.layers.Activation("tanh"), keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    plain = keras.Sequential([keras.Input((x.shape[1],)), model.layers[0], PlainNormalization(norm, axis=-1),
                              *model.layers[2:]])  # fmt: skip
    rng = np.random.default_rng(2)
    v = [rng.standard_normal(tuple(w.shape)).astype("float32") for w in model.trainable_variables]
    got, want = Hessian(model, LOSS, x, y).hvp(v), Hessian(plain, LOSS, x, y).hvp(v)
    np.testing.assert_allclose(_flat(got), _flat(want), rtol=1e-3, atol=1e-5)


def test_density_nodes_are_the_spectrum_and_weights_sum_to_one():
    """With as many Lanczos steps as parameters, SLQ's nodes are the exact
    eigenvalues; fewer steps still find the extreme ones."""
    model = _mlp()
    x, y = _data()
    hess, _ = _exact_hessian(model, x, y)
    eig = np.sort(np.linalg.eigvalsh(hess))
    h = Hessian(model, LOSS, x, y)
    nodes, weights = h.density(iterations=h.num_parameters, num_runs=2, seed=1)
    # (Fewer than 2 x 31 nodes where Lanczos meets an invariant subspace early:
    # this Hessian has repeated eigenvalues.)
    assert nodes.shape == weights.shape and 2 * 10 <= len(nodes) <= 2 * 31
    np.testing.assert_allclose(np.sum(weights), 1.0, rtol=1e-6)
    assert np.all(weights >= 0)
    distance = np.min(np.abs(nodes[:, None] - eig[None, :]), axis=1)
    assert np.max(distance) < 2e-4 * max(1.0, np.max(np.abs(eig))), distance
    np.testing.assert_allclose([nodes.min(), nodes.max()], [eig[0], eig[-1]], rtol=1e-3, atol=1e-5)
    nodes, weights = h.density(iterations=12, num_runs=3, seed=2)
    assert len(nodes) <= 36
    np.testing.assert_allclose(nodes.max(), eig[-1], rtol=1e-3)
    with pytest.raises(ValueError, match="num_runs"):
        h.density(num_runs=0)


def test_diagonal_probes_are_numpys_default_rng_on_every_backend():
    """One probe: the estimate is z * (H z) for z drawn as the docstring says
    (NumPy's default_rng(seed), +-1 per variable in order), so a seed gives
    the same probes on every backend."""
    model = _mlp()
    x, y = _data()
    hess, _ = _exact_hessian(model, x, y)
    rng = np.random.default_rng(11)
    z = _flat([2.0 * rng.integers(0, 2, tuple(v.shape)) - 1.0 for v in model.trainable_variables])
    np.testing.assert_allclose(_flat(Hessian(model, LOSS, x, y).diagonal(num_probes=1, seed=11)), z * (hess @ z),
                               rtol=1e-4, atol=1e-5)  # fmt: skip


@pytest.mark.skipif(BACKEND != "jax", reason="compilation caching is JAX's (jax.jit); needs the JAX backend")
def test_jax_hessian_compiles_once_and_is_reused():
    model = _mlp()
    x, y = _data()
    h = Hessian(model, LOSS, x, y)
    h.top_eigenvalues(k=1)
    h.trace(num_probes=3)
    # Methods that only need HVPs neither compile nor run the gradient program.
    assert h._program._value_and_grad._cache_size() == 0
    model.trainable_variables[0].assign(model.trainable_variables[0] * 2.0)
    h.statistics()
    assert h._program._hvp._cache_size() == 1
    assert h._program._value_and_grad._cache_size() == 1


def test_bad_arguments_name_themselves():
    model = _mlp()
    x, y = _data()
    with pytest.raises(TypeError, match="`loss`"):
        Hessian(model, 3, x, y)
    with pytest.raises(TypeError, match="keras.Model"):
        Hessian("model", LOSS, x, y)
    h = Hessian(model, LOSS, x, y)
    with pytest.raises(ValueError, match="`k` must be"):
        h.top_eigenvalues(k=32)
    with pytest.raises(ValueError, match="num_probes"):
        h.diagonal(num_probes=0)


@pytest.mark.parametrize("interval", [1, 3])
def test_is_refresh_is_one_predicate_for_ints_and_tensors(interval):
    opt = kz.Hybrid(hessian_update_interval=interval)
    for step in range(8):
        expected = step % interval == 0
        assert opt.is_refresh(step) is expected
        assert bool(keras.ops.convert_to_numpy(opt.is_refresh(keras.ops.convert_to_tensor(step)))) == expected


def test_curvature_requests_say_what_each_optimizer_needs():
    assert kz.SophiaH(num_probes=3, seed=4).curvature_request()[:4] == ("diagonal", 10, 3, 4)
    assert kz.SophiaG(seed=2).curvature_request()[:4] == ("gauss_newton_bartlett", 10, 1, 2)
    newton = kz.Newton(method="cg", curvature="ggn", cg_iterations=7, precondition=False).curvature_request()
    assert (newton.kind, newton.interval, newton.method, newton.matrix) == ("newton", 1, "cg", "ggn")
    assert (newton.cg_iterations, newton.precondition, newton.adaptive_damping) == (7, False, True)
    assert kz.Newton(adaptive_damping=False).curvature_request()[:3] == ("newton", 1, 1)


def test_host_step_follows_training_and_loading(tmp_path):
    """The host-side step count equals `iterations` after fit and after
    loading a saved model (torch decides refreshes from it)."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    model = kz.with_curvature(_mlp())
    model.compile(optimizer=kz.Hybrid(0.01, hessian_update_interval=3), loss=LOSS)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    opt = model.optimizer
    assert opt.host_step() == int(keras.ops.convert_to_numpy(opt.iterations)) == 4
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert opt.host_step() == 8
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.host_step() == 8


def test_probe_signs_are_the_bits_of_the_words_as_numpy_unpacks_them():
    """Bit j of word i (least significant first) is probe entry 32 i + j, +1
    for a 1 and -1 for a 0, in every backend's unpacking (TensorFlow's XLA
    program, torch's byte table, JAX's keras.ops one), against
    `np.unpackbits`; a shape that does not fill the last word is cut."""
    from keras_optzoo.backend import _common

    words = np.random.default_rng(3).integers(-(2**31), 2**31, size=3, dtype=np.int64).astype(np.int32)
    bits = np.unpackbits(words.astype("<i4").view(np.uint8), bitorder="little")
    shape = (7, 11)  # 77 entries: two words and 13 bits of the third
    expected = (2.0 * bits[:77] - 1.0).reshape(shape)
    if BACKEND == "tensorflow":
        from keras_optzoo.backend.tensorflow.kernels_second_order import probe_signs as unpack
    elif BACKEND == "torch":
        import torch

        from keras_optzoo.backend.torch.hvp import _signs

        def unpack(w, shape, dtype):
            return _signs(torch.as_tensor(w), shape, getattr(torch, dtype))
    else:
        unpack = _common.signs
    out = keras.ops.convert_to_numpy(unpack(keras.ops.convert_to_tensor(words), shape, "float32"))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected)


def _logits_mlp(dtype=None):
    keras.utils.set_random_seed(5)
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="tanh", dtype=dtype),
                             keras.layers.Dense(3, dtype=dtype)])  # fmt: skip


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", keras.losses.SparseCategoricalCrossentropy()])
def test_a_probability_loss_on_a_logits_model_is_rejected_with_the_fix(loss):
    x, y = _data()
    with pytest.raises(ValueError, match=r"from_logits=True"):
        Hessian(_logits_mlp(), loss, x, y)
    # the fix it names works, and gives the Hessian of the softmax model's loss
    softmax = keras.Sequential([_logits_mlp(), keras.layers.Softmax()])
    fixed = Hessian(_logits_mlp(), keras.losses.SparseCategoricalCrossentropy(from_logits=True), x, y)
    v = [np.ones(tuple(w.shape), "float32") for w in softmax.trainable_variables]
    np.testing.assert_allclose(_flat(fixed.hvp(v)), _flat(Hessian(softmax, LOSS, x, y).hvp(v)), rtol=1e-4, atol=1e-6)


def test_construction_errors_name_the_argument_and_the_fix():
    x, y = _data()
    with pytest.raises(ValueError, match="not built.*keras.Input"):
        Hessian(keras.Sequential([keras.layers.Dense(3, activation="softmax")]), LOSS, x, y)
    frozen = _mlp()
    frozen.trainable = False
    with pytest.raises(ValueError, match="no trainable weights"):
        Hessian(frozen, LOSS, x, y)
    with pytest.raises(ValueError, match=r"`x` does not fit the model \(shape \(16, 5\)\)") as bad_x:
        Hessian(_mlp(), LOSS, np.zeros((16, 5), "float32"), y)
    assert "\x1b[" not in str(bad_x.value)  # Keras's terminal colour codes are stripped
    with pytest.raises(ValueError, match=r"`y` \(shape \(16, 7\)\) does not match"):
        Hessian(_mlp(), "categorical_crossentropy", x, np.zeros((16, 7), "float32"))
    with pytest.raises(ValueError, match="reduce to a scalar"):
        Hessian(_mlp(), keras.losses.SparseCategoricalCrossentropy(reduction=None), x, y)
    i = keras.Input((3,))
    two = keras.Model(i, [keras.layers.Dense(3, activation="softmax")(i), keras.layers.Dense(1)(i)])
    with pytest.raises(ValueError, match="2 outputs"):
        Hessian(two, LOSS, x, y)


def test_a_per_sample_loss_function_is_averaged_as_compile_does():
    """keras.losses.mean_squared_error returns one value per sample: the
    Hessian is that of their mean (compile's default reduction)."""
    x, _ = _data()
    target = np.zeros((16, 3), "float32")
    model = _logits_mlp()
    v = [np.ones(tuple(w.shape), "float32") for w in model.trainable_variables]
    got = Hessian(model, keras.losses.mean_squared_error, x, target).hvp(v)
    want = Hessian(model, keras.losses.MeanSquaredError(), x, target).hvp(v)
    np.testing.assert_allclose(_flat(got), _flat(want), rtol=1e-5, atol=1e-7)


def test_hvp_checks_its_vectors_on_every_backend():
    model = _mlp()
    x, y = _data()
    h = Hessian(model, LOSS, x, y)
    v = [np.ones(tuple(w.shape), "float32") for w in model.trainable_variables]
    with pytest.raises(ValueError, match=r"one array per trainable variable \(4"):
        h.hvp(v[:3])
    with pytest.raises(ValueError, match="`vectors` is empty"):
        h.hvp([])
    with pytest.raises(ValueError, match=r"`vectors\[1\]` must hold one array per trainable variable"):
        h.hvp([v, v[:2]])
    with pytest.raises(ValueError, match=r"`vectors`\[1\] must have the shape"):
        h.hvp([v[0], np.ones(5, "float32")] + v[2:])
    with pytest.raises(TypeError, match=r"`vectors`\[0\] must be floating"):
        h.hvp([np.ones((3, 4), "int32")] + v[1:])
    with pytest.raises(ValueError, match="`iterations` must be an integer >= 5"):
        h.top_eigenvalues(5, iterations=3)


@pytest.mark.skipif(BACKEND == "jax", reason="JAX without jax_enable_x64 stores float64 variables as float32 (documented)")
def test_a_float64_model_gets_float64_products():
    """A float64 model: H v and the top eigenvalue agree with the float64
    finite-difference Hessian to ~1e-9, far beyond float32's ~1e-7. (The
    cross-entropy is written in keras.ops: Keras's own sparse cross-entropy
    on torch rounds through float32, 8e-8 off in the loss.) On torch the
    bound is float32's: Keras 3.15's torch `matmul` computes float64 inputs
    in float32 (`dtypes.result_type(torch.float64, torch.float64)` is
    "float32"), so a Dense layer is ~1e-7 off; the docs say so."""
    tolerance = 1e-6 if BACKEND == "torch" else 1e-8

    def crossentropy(labels, probabilities):
        picked = keras.ops.take_along_axis(probabilities, keras.ops.expand_dims(keras.ops.cast(labels, "int32"), 1), 1)
        return -keras.ops.mean(keras.ops.log(picked))

    x, y = _data()
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((3,), dtype="float64"),
        keras.layers.Dense(4, activation="tanh", kernel_regularizer=keras.regularizers.L2(L2), dtype="float64"),
        keras.layers.Dense(3, activation="softmax", dtype="float64"),
    ])  # fmt: skip
    hess, shapes = _exact_hessian(model, x, y)
    h = Hessian(model, crossentropy, x.astype("float64"), y)
    v = np.random.default_rng(1).standard_normal(hess.shape[0])
    parts = np.split(v, np.cumsum([int(np.prod(s)) for s in shapes])[:-1])
    got = _flat(h.hvp([p.reshape(s) for p, s in zip(parts, shapes)]))
    np.testing.assert_allclose(got, hess @ v, rtol=0, atol=tolerance * np.abs(hess @ v).max())
    np.testing.assert_allclose(h.top_eigenvalues(1, iterations=hess.shape[0])[0], np.linalg.eigvalsh(hess)[-1],
                               rtol=tolerance)  # fmt: skip


def _attention_model():
    """A causal self-attention block on token embeddings (torch runs it through
    scaled_dot_product_attention, whose fused kernels have no double backward);
    tanh, not ReLU, so that finite differences do not cross kinks."""
    from keras_optzoo.tasks import text

    keras.utils.set_random_seed(3)
    return text.transformer(vocab_size=7, length=5, width=8, heads=2, mlp=8, activation="tanh")


def test_hessian_through_multi_head_attention_matches_finite_differences_of_the_gradient():
    model = _attention_model()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 7, (6, 5)).astype("int32"), rng.integers(0, 7, (6, 5)).astype("int32")
    v = [0.5 * rng.standard_normal(tuple(w.shape)).astype("float32") for w in model.trainable_variables]
    hv = _flat(Hessian(model, LOSS, x, y).hvp(v))
    start, eps = [keras.ops.convert_to_numpy(w) for w in model.trainable_variables], 1e-3
    grads = []
    for sign in (1, -1):
        for w, w0, d in zip(model.trainable_variables, start, v):
            w.assign(w0 + sign * eps * d)
        grads.append(_flat(Hessian(model, LOSS, x, y).gradient()))
    # Attention's curvature is large (|Hv| ~ 10^2 here): the float32 central
    # difference agrees to ~0.1 % of |Hv|; the three backends agree with each
    # other to 1e-6 of it on the same weights (measured when this was written).
    fd = (grads[0] - grads[1]) / (2 * eps)
    assert np.linalg.norm(hv - fd) <= 1e-2 * np.linalg.norm(hv), (np.linalg.norm(hv - fd), np.linalg.norm(hv))


def test_a_second_order_optimizer_trains_a_transformer_through_with_curvature():
    """The with_curvature train step differentiates attention twice on every
    backend (torch: the math attention kernel on refresh steps)."""
    model = kz.with_curvature(_attention_model())
    model.compile(optimizer=kz.optimizers.SophiaH(learning_rate=0.01, hessian_update_interval=1), loss=LOSS)
    rng = np.random.default_rng(1)
    x = rng.integers(0, 7, (64, 5)).astype("int32")
    y = np.roll(x, 1, axis=1)  # the previous token: learnable through causal attention
    losses = model.fit(x, y, batch_size=16, epochs=4, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and np.all(np.diff(losses) < 0) and losses[-1] < 0.95 * losses[0], losses
