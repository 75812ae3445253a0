"""Multi-device data-parallel training on the engines Keras has: JAX
`keras.distribution.DataParallel` over 2 virtual CPU devices and TensorFlow
`tf.distribute.MirroredStrategy` over 2 logical CPUs give the weights of
single-device training with the same global batch, first- and second-order
(the Hutchinson / Newton-CG curvature is summed across replicas). Optimizer
state follows each variable's layout under `keras.distribution`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
from conftest import BACKEND

CASES = {
    "Momentum": "kz.Momentum(0.05)",
    "Adam": "kz.Adam(1e-3)",
    "Hybrid k=3": "kz.Hybrid(1e-3, hessian_update_interval=3)",
    "SophiaH k=10": "kz.SophiaH(1e-3)",
    "Newton-CG": "kz.Newton(0.05, method='cg', damping=1.0, cg_iterations=3)",
    "Newton diagonal k=3": "kz.Newton(0.05, damping=1.0, hessian_update_interval=3)",
    # Only the 10-wide output dimension rotated. Its factor's null space (the
    # logits' common shift, to which softmax is blind) holds rounding noise
    # only; SOAP's default epsilon 1e-8 turns that noise into lr-sized steps
    # of either sign (harmless for the loss, not reproducible bit for bit),
    # epsilon 1e-4 keeps them at ~1e-5 lr.
    "SOAP": "kz.SOAP(1e-3, precondition_frequency=3, max_precondition_dim=16, epsilon=1e-4)",
    "Shampoo": "kz.Shampoo(1e-3, precondition_frequency=3, epsilon=1e-3, max_preconditioner_dim=512)",
}

SCRIPT = r"""
import json, os, sys
import numpy as np
BACKEND = os.environ["KERAS_BACKEND"]
if BACKEND == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
import keras_optzoo as kz
from keras_optzoo.tasks import mnist

CASES = json.loads(sys.argv[1])
(x, y), _ = mnist.load_embedded(n_train=256)
initial = {}


def train(label, scope):
    keras.utils.set_random_seed(0)
    with scope():
        model = mnist.mlp(hidden_activation="relu")
        initial.setdefault(label, model.get_weights())
        model.set_weights(initial[label])
        opt = eval(CASES[label])
        if isinstance(opt, kz.optimizers.SECOND_ORDER):
            model = kz.with_curvature(model)
        model.compile(optimizer=opt, loss=mnist.LOSS)
    model.fit(x, y, batch_size=64, epochs=2, shuffle=False, verbose=0)
    return model


out = {"diff": {}, "layouts": {}}
if BACKEND == "tensorflow":
    import contextlib
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    for label in CASES:
        single = train(label, contextlib.nullcontext)
        multi = train(label, mirrored.scope)
        out["diff"][label] = max(float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), multi.get_weights()))
    out["replicas"] = mirrored.num_replicas_in_sync
else:
    import contextlib
    import jax
    out["replicas"] = len(jax.devices())
    singles = {label: train(label, contextlib.nullcontext) for label in CASES}
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))
    for label in CASES:
        multi = train(label, contextlib.nullcontext)
        out["diff"][label] = max(
            float(np.abs(a - b).max()) for a, b in zip(singles[label].get_weights(), multi.get_weights())
        )
    # Model parallel: kernels split over the 2 devices; every optimizer slot
    # (and Hybrid's curvature input) must carry its variable's layout.
    mesh = keras.distribution.DeviceMesh((2,), ["model"], jax.devices())
    layout_map = keras.distribution.LayoutMap(mesh)
    layout_map[".*dense.*kernel"] = (None, "model")
    keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="model"))
    for label in ("Adam", "Hybrid k=3"):
        model = train(label, contextlib.nullcontext)
        opt = model.optimizer
        # Keras names a slot "<optimizer>/<variable path with _>_<slot>".
        pairs = [
            [str(v.value.sharding.spec), str(s.value.sharding.spec)]
            for v in model.trainable_variables
            for s in opt.variables
            if s.path.split("/", 1)[-1].startswith(v.path.replace("/", "_") + "_")
        ]
        out["layouts"][label] = pairs
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    if BACKEND == "torch":
        pytest.skip("keras.distribution has no torch implementation (see test_torch_has_no_keras_distribution)")
    script = tmp_path_factory.mktemp("dist") / "run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, KERAS_BACKEND=BACKEND, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(CASES)], capture_output=True, text=True, env=env, timeout=900
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.mark.parametrize("label", list(CASES))
def test_two_devices_match_one_device(distributed_run, label):
    assert distributed_run["replicas"] == 2
    assert distributed_run["diff"][label] < 1e-5, distributed_run["diff"]


@pytest.mark.skipif(BACKEND != "jax", reason="needs the JAX backend: Keras 3.15 implements keras.distribution layouts only there")
@pytest.mark.parametrize("label", ["Adam", "Hybrid k=3"])
def test_optimizer_state_inherits_each_variables_layout(distributed_run, label):
    pairs = distributed_run["layouts"][label]
    assert len(pairs) >= 4  # two kernels and two biases, at least one slot each
    assert any("model" in v for v, _ in pairs)  # some variables really are split
    for variable_spec, slot_spec in pairs:
        assert slot_spec == variable_spec


@pytest.mark.skipif(BACKEND != "torch", reason="checks a torch-backend limit; needs the torch backend")
def test_torch_has_no_keras_distribution():
    """Keras 3.15's `keras.distribution` is implemented for JAX (and TF's
    tf.distribute is TF's own); on torch even constructing DataParallel fails.
    README "Guarantees" says so; this test notices when Keras adds it."""
    with pytest.raises(AttributeError):
        keras.distribution.DataParallel()
