"""The fused backend kernels (torch `_fused_*`/`_foreach_*`, TensorFlow
`ResourceApply*`) give the numbers of the keras.ops reference code
(`fused=False`) on every backend, in eager, compiled and `fit()` use."""

import numpy as np
import pytest

import keras

import keras_optzoo as kz
from keras_optzoo import backend
from conftest import BACKEND, assert_all_close, random_problem

SCHEDULE = keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.7)

# (id, constructor) for every optimizer with a fused kernel; a schedule checks
# that the kernels take the current learning rate.
CASES = [
    ("sgd", lambda **k: kz.SGD(SCHEDULE, **k)),
    ("momentum", lambda **k: kz.Momentum(SCHEDULE, momentum=0.8, **k)),
    ("nesterov", lambda **k: kz.Nesterov(SCHEDULE, momentum=0.85, **k)),
    ("adagrad", lambda **k: kz.Adagrad(SCHEDULE, initial_accumulator_value=0.1, epsilon=1e-6, **k)),
    ("rmsprop", lambda **k: kz.RMSprop(0.01, rho=0.8, **k)),
    ("adam", lambda **k: kz.Adam(SCHEDULE, beta_1=0.8, beta_2=0.95, epsilon=1e-6, **k)),
    ("amsgrad", lambda **k: kz.AMSGrad(0.01, beta_2=0.9, **k)),
    ("adamw", lambda **k: kz.AdamW(0.01, weight_decay=0.1, **k)),
    ("adam-clipped", lambda **k: kz.Adam(0.01, global_clipnorm=1.0, **k)),
]
IDS = [c[0] for c in CASES]
# Which hook runs the kernels on each backend ("all" variables at once, or
# "one" at a time); JAX has none, XLA fuses the keras.ops code.
HOOK = {"torch": "all", "tensorflow": "one", "jax": None}[BACKEND]
# TensorFlow has no training op for RMSprop with epsilon outside the root,
# and none for AMSGrad that compiles under XLA.
NO_KERNEL = {"tensorflow": {"rmsprop", "amsgrad"}}.get(BACKEND, set())


def run(optimizer, init, grads):
    """Steps with `apply`; returns variable and slot values as NumPy."""
    variables = [keras.Variable(v) for v in init]
    for step in grads:
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step], variables)
    slots = [v for v in optimizer.variables if len(v.shape) > 0]
    return [keras.ops.convert_to_numpy(v) for v in variables + slots]


@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=IDS)
def test_fused_equals_reference(make):
    init, grads = random_problem(25, seed=3)
    fused = run(make(), init, grads)
    reference = run(make(fused=False), init, grads)
    assert len(fused) == len(reference) >= len(init)
    assert_all_close(fused, reference, rtol=1e-5, atol=1e-6)


def hooks_that_ran(opt, curvature=False):
    """(all-variables hook ran, one-variable hook ran) for one step of `opt`
    on a (4, 3) and a (3,) variable; the kernel tests' "is it used" check."""
    variables = [keras.Variable(np.ones((4, 3), "float32")), keras.Variable(np.ones(3, "float32"))]
    opt.build(variables)
    if curvature:
        opt.set_curvature([np.ones((4, 3), "float32"), np.ones(3, "float32")])
    spec = opt._fused_spec()
    assert spec is not None
    grads, lr = [keras.ops.ones((4, 3)), keras.ops.ones(3)], opt.learning_rate
    return (backend.fused_update(opt, spec, grads, variables, lr),
            backend.fused_update_one(opt, spec, grads[0], variables[0], lr))


@pytest.mark.parametrize("name, make", CASES, ids=IDS)
def test_fused_kernel_is_used(name, make):
    """The hook this backend uses reports that it ran (so the equality test
    above compares two different code paths)."""
    used = HOOK if name not in NO_KERNEL else None
    assert hooks_that_ran(make()) == (used == "all", used == "one")


def test_no_fused_kernel_for_ema_momentum_and_newton_takes_sgds():
    assert kz.Momentum(form="ema")._fused_spec() is None
    # Newton's update is theta -= lr d with d in the gradient's place: SGD's kernel.
    assert kz.Newton()._fused_spec() == kz.Newton(method="cg")._fused_spec() == kz.SGD()._fused_spec()


# Second-order optimizers with a kernel (torch `_foreach`, TensorFlow one XLA
# program per variable): each case steps through refresh and non-refresh steps
# (interval 2 or 3 over 7 steps), with the base keywords that act before the
# kernel (weight_decay, clipnorm).
SECOND_ORDER_CASES = [
    ("hybrid-l2", lambda **k: kz.Hybrid(0.05, hessian_update_interval=3, l2=0.01, weight_decay=0.1, clipnorm=1.0, **k)),
    ("hybrid", lambda **k: kz.Hybrid(SCHEDULE, beta_3=0.9, epsilon=1e-6, **k)),
    ("adahessian", lambda **k: kz.AdaHessian(0.05, hessian_update_interval=3, clipnorm=0.5, **k)),
    # lr 0.01: at 0.05 a first step divided by a tiny |D|^0.7 moves weights by
    # ~5, and the reference's own float32 rounding (1e-6 of that) fails rtol.
    ("adahessian-power", lambda **k: kz.AdaHessian(
        keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=3, decay_rate=0.7),
        hessian_update_interval=2, hessian_power=0.7, **k)),
    ("sophiah", lambda **k: kz.SophiaH(0.05, hessian_update_interval=3, gamma=0.5, weight_decay=0.1, **k)),
]
if hasattr(kz, "SophiaG"):
    SECOND_ORDER_CASES.append(("sophiag", lambda **k: kz.SophiaG(0.05, hessian_update_interval=2, gamma=0.5, **k)))
SECOND_ORDER_IDS = [c[0] for c in SECOND_ORDER_CASES]
# A scalar, a vector, a matrix and a Conv2D kernel (AdaHessian averages its 3x3 axes).
CONV_SHAPES = [(), (7,), (5, 3), (3, 3, 2, 4)]


def run_second_order(optimizer, init, grads, curvatures):
    """`set_curvature` then `apply`, step by step (as the train step does);
    returns variable and slot values as NumPy."""
    variables = [keras.Variable(v) for v in init]
    optimizer.build(variables)
    for step, curvature in zip(grads, curvatures):
        optimizer.set_curvature(curvature)
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step], variables)
    slots = [v for v in optimizer.variables if len(v.shape) > 0]
    return [keras.ops.convert_to_numpy(v) for v in variables + slots]


@pytest.mark.parametrize("make", [c[1] for c in SECOND_ORDER_CASES], ids=SECOND_ORDER_IDS)
def test_second_order_fused_equals_reference(make):
    """The curvature differs every step, so a kernel that folded it into its
    EMA on a non-refresh step (or skipped a refresh) would differ."""
    init, grads = random_problem(7, seed=8, shapes=CONV_SHAPES)
    _, curvatures = random_problem(7, seed=9, shapes=CONV_SHAPES)
    fused = run_second_order(make(), init, grads, curvatures)
    reference = run_second_order(make(fused=False), init, grads, curvatures)
    assert len(fused) == len(reference) >= 3 * len(init)
    assert_all_close(fused, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, make", SECOND_ORDER_CASES, ids=SECOND_ORDER_IDS)
def test_second_order_fused_kernel_is_used(name, make):
    assert hooks_that_ran(make(), curvature=True) == (HOOK == "all", HOOK == "one")


# SOAP and Shampoo: torch runs their step as plain torch calls
# (backend/torch/kernels_kronecker.py, kernels_shampoo.py); TensorFlow and
# JAX have no kernel (XLA compiles the keras.ops code). 12 steps through the
# start, refreshes and steps between; shapes whose first factors have at most
# a one-dimensional null space (the eigenbasis is then unique up to sign) and
# epsilon 1e-3 (0.1 without grafting, which leaves the root's scale in the
# step; at 1e-12 a near-null direction's inverse root amplifies
# rounding by ~1e3, so any two float32 codes drift apart; docs/kronecker.md).
KRONECKER_CASES = [
    ("soap", lambda **k: kz.SOAP(SCHEDULE, precondition_frequency=3, epsilon=1e-3, weight_decay=0.1, **k)),
    ("soap-merged", lambda **k: kz.SOAP(0.01, precondition_frequency=2, merge_dims=True, max_precondition_dim=6,
                                        shampoo_beta=0.8, epsilon=1e-3, **k)),
    # `iterations` is a tensor, not a variable, under gradient accumulation.
    ("soap-accumulated", lambda **k: kz.SOAP(0.01, precondition_frequency=2, epsilon=1e-3,
                                             gradient_accumulation_steps=2, **k)),
    ("shampoo-blocks", lambda **k: kz.Shampoo(SCHEDULE, precondition_frequency=2, start_preconditioning_step=3,
                                              max_preconditioner_dim=4, epsilon=1e-3, weight_decay=0.1, **k)),
    ("shampoo-rmsprop-nesterov", lambda **k: kz.Shampoo(0.01, precondition_frequency=2, grafting="rmsprop",
                                                        beta_1=0.0, grafting_beta_2=0.5, momentum=0.5, nesterov=True,
                                                        epsilon=1e-3, **k)),
    ("shampoo-adagrad-sum", lambda **k: kz.Shampoo(0.01, precondition_frequency=3, grafting="adagrad", beta_2=1.0,
                                                   momentum=0.5, use_bias_correction=False, epsilon=1e-3, **k)),
    ("shampoo-sgd", lambda **k: kz.Shampoo(0.01, precondition_frequency=2, grafting="sgd", epsilon=1e-3, **k)),
    ("shampoo-none-merged", lambda **k: kz.Shampoo(0.01, precondition_frequency=3, grafting=None, merge_dims=True,
                                                   max_preconditioner_dim=20, exponent_override=0.5, epsilon=0.1,
                                                   **k)),
]
KRONECKER_IDS = [c[0] for c in KRONECKER_CASES]
KRONECKER_SHAPES = [(), (7,), (5, 4), (3, 3, 2, 4), (6, 1, 5)]


@pytest.mark.skipif(BACKEND != "torch", reason="only torch has a SOAP/Shampoo kernel (fused=False is the same code)")
@pytest.mark.parametrize("make", [c[1] for c in KRONECKER_CASES], ids=KRONECKER_IDS)
def test_kronecker_fused_equals_reference(make):
    init, grads = random_problem(12, seed=14, shapes=KRONECKER_SHAPES)
    fused = run(make(), init, grads)
    reference = run(make(fused=False), init, grads)
    assert len(fused) == len(reference) > 3 * len(init)
    assert_all_close(fused, reference, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, make", KRONECKER_CASES, ids=KRONECKER_IDS)
def test_kronecker_fused_kernel_is_used(name, make):
    assert hooks_that_ran(make()) == (BACKEND == "torch", False)


@pytest.mark.skipif(BACKEND != "torch", reason="the torch kernels' grouping of variables")
def test_large_variables_run_in_groups_and_match():
    """On CPU the `_foreach` kernels run on groups of consecutive variables
    (large ones alone): several groups give the numbers of the reference."""
    import torch

    from keras_optzoo.backend.torch import kernels_foreach as kernels

    shapes = [(520, 510), (7,), (300, 900), (3,), (600, 500), (5,)]
    assert kernels._groups([torch.zeros(s) for s in shapes]) == [[0], [1, 2], [3, 4, 5]]
    init, grads = random_problem(3, seed=10, shapes=shapes)
    _, curvatures = random_problem(3, seed=11, shapes=shapes)
    assert_all_close(run(kz.RMSprop(0.01), init, grads), run(kz.RMSprop(0.01, fused=False), init, grads))
    hybrid = [run_second_order(kz.Hybrid(0.01, hessian_update_interval=2, fused=f), init, grads, curvatures)
              for f in (True, False)]  # fmt: skip
    assert_all_close(hybrid[0], hybrid[1], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND != "torch", reason="torch tensors with a layout of their own (strides)")
@pytest.mark.parametrize("make", [c[1] for c in CASES + SECOND_ORDER_CASES + KRONECKER_CASES[:3]],
                         ids=IDS + SECOND_ORDER_IDS + KRONECKER_IDS[:3])
def test_gradients_laid_out_differently_from_the_variable(make):
    """torch.autograd.grad gives a Conv2D kernel's gradient as a permuted
    view; torch's fused kernels walk memory in order, so such a gradient
    must reach them in the variable's layout (it did not: every entry of
    the kernel's update was wrong)."""
    import torch

    init, grads = random_problem(4, seed=12, shapes=CONV_SHAPES)
    _, curvatures = random_problem(4, seed=13, shapes=CONV_SHAPES)

    def permuted(g):  # the same values, memory in reverse axis order
        return torch.tensor(g.transpose().copy()).permute(tuple(reversed(range(g.ndim))))

    assert not permuted(grads[0][3]).is_contiguous()
    results = []
    for layout in (permuted, torch.tensor):
        opt = make()
        variables = [keras.Variable(v) for v in init]
        opt.build(variables)
        for step, curvature in zip(grads, curvatures):
            if hasattr(opt, "set_curvature"):
                opt.set_curvature(curvature)
            opt.apply([layout(g) for g in step], variables)
        results.append([keras.ops.convert_to_numpy(v) for v in variables])
    assert_all_close(results[0], results[1], rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(BACKEND != "torch", reason="the torch kernels' device-tensor learning-rate path")
def test_device_tensor_learning_rate_path():
    """On an accelerator the learning rate stays a device tensor (no host
    read); the kernels' tensor branch gives the float branch's numbers (run
    here on CPU tensors)."""
    import torch

    from keras_optzoo.backend.torch import kernels_foreach as kernels

    rng = np.random.default_rng(12)
    make = lambda: [torch.tensor(rng.standard_normal(s).astype("float32")) for s in CONV_SHAPES]  # noqa: E731
    params, num, den = make(), make(), [d.abs() + 0.1 for d in make()]
    results = []
    for scale in (0.3, torch.tensor(0.3)):
        p = [x.clone() for x in params]
        kernels._scaled_step(p, num, [d.clone() for d in den], scale)
        kernels._add_scaled(p, num, scale)
        results.append([x.numpy() for x in p])
    assert_all_close(results[1], results[0], rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(BACKEND == "jax", reason="JAX has no second-order kernels (the flag changes nothing there)")
@pytest.mark.parametrize("name", ["hybrid", "adahessian", "sophiah"])
def test_second_order_fused_equals_reference_in_fit(name):
    """`with_curvature` + fit on a Conv2D + Dense model, 8 steps at interval
    3 (refresh and non-refresh steps), with weight_decay and clipnorm: the
    same weights with and without the kernels."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 32)
    make = {"hybrid": kz.Hybrid, "adahessian": kz.AdaHessian, "sophiah": kz.SophiaH}[name]
    weights = []
    for fused in (True, False):
        keras.utils.set_random_seed(7)
        model = keras.Sequential([
            keras.Input((8, 8, 1)), keras.layers.Conv2D(3, 3, activation="tanh"), keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ])  # fmt: skip
        opt = make(learning_rate=0.01, hessian_update_interval=3, weight_decay=0.05, clipnorm=1.0, fused=fused)
        model = kz.with_curvature(model)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        weights.append([np.asarray(w) for w in model.get_weights()])
    assert_all_close(weights[0], weights[1], rtol=1e-4, atol=1e-5)


def test_fused_flag_round_trips_and_is_validated():
    opt = kz.Adam(fused=False)
    assert opt.get_config()["fused"] is False
    assert kz.Adam.from_config(opt.get_config()).fused is False
    with pytest.raises(TypeError, match="fused"):
        kz.Adam(fused="yes")


def test_weight_decay_in_kernel_respects_exclusions():
    """AdamW's decay inside torch's fused kernel (elsewhere Keras's own
    decay) skips the variables excluded by name, as the reference does."""
    init, grads = random_problem(10, seed=4, shapes=[(4, 3), (3,)])
    results = []
    for fused in (True, False):
        opt = kz.AdamW(0.05, weight_decay=0.2, fused=fused)
        opt.exclude_from_weight_decay(var_names=["bias"])
        variables = [keras.Variable(init[0], name="kernel"), keras.Variable(init[1], name="bias")]
        for step in grads:
            opt.apply([keras.ops.convert_to_tensor(g) for g in step], variables)
        results.append([keras.ops.convert_to_numpy(v) for v in variables])
    assert_all_close(results[0], results[1], rtol=1e-5, atol=1e-6)
    assert kz.AdamW(weight_decay=0.1)._decay_in_kernel() == (BACKEND == "torch")
    assert not kz.AdamW(weight_decay=0.1, fused=False)._decay_in_kernel()


@pytest.mark.parametrize("name", ["momentum", "adagrad", "adam", "amsgrad", "adamw"])
def test_fused_equals_reference_in_fit(name):
    """Through compile()/fit() (tf.function, jax.jit or torch eager) on a
    real model: the same weights with and without the kernels."""
    x = np.random.default_rng(0).standard_normal((64, 6)).astype("float32")
    y = (x[:, :1] - 0.5 * x[:, 1:2] > 0).astype("float32")
    weights = []
    for fused in (True, False):
        keras.utils.set_random_seed(7)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(1)])
        opt = type(kz.optimizers.get(name))(learning_rate=0.01, fused=fused)
        model.compile(optimizer=opt, loss=keras.losses.BinaryCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        weights.append([np.asarray(w) for w in model.get_weights()])
    # Training feeds rounding differences back through the gradients, so
    # this is looser than the single-update comparisons above.
    assert_all_close(weights[0], weights[1], rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="needs the TensorFlow backend (tf.function with jit_compile=True)")
@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=IDS)
def test_fused_kernels_compile_under_xla(make):
    import tensorflow as tf

    init, grads = random_problem(4, seed=5)
    results = []
    for fused in (True, False):
        opt = make(fused=fused)
        variables = [keras.Variable(v) for v in init]
        opt.build(variables)
        step = tf.function(lambda g: opt.apply(g, variables), jit_compile=True)
        for g in grads:
            step([tf.constant(x) for x in g])
        results.append([v.numpy() for v in variables])
    assert_all_close(results[0], results[1], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="needs the TensorFlow backend (tf.function with jit_compile=True)")
@pytest.mark.parametrize("make", [c[1] for c in SECOND_ORDER_CASES], ids=SECOND_ORDER_IDS)
def test_second_order_kernels_inside_an_xla_step(make):
    """The second-order kernels (XLA programs of their own) inside a step
    that is itself compiled with XLA, as under `compile(jit_compile=True)`."""
    import tensorflow as tf

    init, grads = random_problem(5, seed=6, shapes=CONV_SHAPES)
    _, curvatures = random_problem(5, seed=7, shapes=CONV_SHAPES)
    results = []
    for fused in (True, False):
        opt = make(fused=fused)
        variables = [keras.Variable(v) for v in init]
        opt.build(variables)

        @tf.function(jit_compile=True)
        def step(g, c):
            opt.set_curvature(c)
            opt.apply(g, variables)

        for g, c in zip(grads, curvatures):
            step([tf.constant(x) for x in g], [tf.constant(x) for x in c])
        results.append([v.numpy() for v in variables])
    assert_all_close(results[0], results[1], rtol=1e-5, atol=1e-6)


MIRRORED = r"""
import json, os, sys
os.environ["KERAS_BACKEND"] = "tensorflow"
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
import keras
import keras_optzoo as kz

rng = np.random.default_rng(0)
x = rng.standard_normal((128, 6)).astype("float32")
y = (x[:, :2] @ np.array([[1.0], [-2.0]], "float32")) + 0.1
initial = None

def train(strategy):
    global initial
    with strategy.scope():
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(1)])
        if initial is None:
            initial = model.get_weights()
        model.set_weights(initial)
        model.compile(optimizer=kz.optimizers.get(sys.argv[1]), loss="mse")
    model.fit(x, y, batch_size=32, epochs=3, shuffle=False, verbose=0)
    return [w.tolist() for w in model.get_weights()], strategy.num_replicas_in_sync

single, n1 = train(tf.distribute.get_strategy())
mirrored, n2 = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
print("RESULT " + json.dumps({"single": single, "mirrored": mirrored, "replicas": [n1, n2]}))
"""


@pytest.mark.skipif(BACKEND != "tensorflow", reason="needs the TensorFlow backend (tf.distribute.MirroredStrategy)")
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_fused_kernels_keep_the_mirrored_cross_replica_sum(name, tmp_path):
    """Two replicas on two logical CPUs, global batch 32, give the weights of
    one device with batch 32: the gradients were summed across replicas
    before the fused per-variable kernels ran on each replica's copy."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, str(script), name], capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["replicas"] == [1, 2]
    single = [np.asarray(w, "float32") for w in result["single"]]
    mirrored = [np.asarray(w, "float32") for w in result["mirrored"]]
    assert_all_close(mirrored, single, rtol=1e-5, atol=1e-5)
