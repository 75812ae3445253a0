"""keras.callbacks.BackupAndRestore with our optimizers: a run interrupted
mid-epoch and resumed (in the same process with new objects, or after a full
process restart) ends with the weights and optimizer state of a run that was
never interrupted."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from conftest import BACKEND
from keras_optzoo.tasks import mnist

ALL = [(cls.__name__, cls) for cls in kz.optimizers.ALL_OPTIMIZERS]
# Second-order optimizers refresh every 3 steps so that the refresh schedule
# crosses the interruption.
CONFIG = {kz.Newton: {"learning_rate": 0.05, "damping": 1.0}, kz.AdaHessian: {"learning_rate": 0.02}}
EPOCHS, BATCH, N = 2, 64, 256


class Interrupt(keras.callbacks.Callback):
    """Raises in epoch 1 at batch 2, after the epoch-0 backup."""

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch == 1 and batch == 2:
            raise KeyboardInterrupt("simulated crash")

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch


def make(cls):
    keras.utils.set_random_seed(0)
    model = mnist.mlp(hidden_activation="relu")
    kwargs = dict(CONFIG.get(cls, {}))
    if cls in kz.optimizers.SECOND_ORDER:
        model = kz.with_curvature(model)
        kwargs["hessian_update_interval"] = 3
    model.compile(optimizer=cls(**kwargs), loss=mnist.LOSS)
    return model


def data():
    (x, y), _ = mnist.load_embedded(n_train=N)
    return x, y


def state_of(model):
    weights = [np.asarray(w) for w in model.get_weights()]
    opt = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    return weights, opt


def assert_same(a, b):
    for got, want in zip(a[0] + a[1], b[0] + b[1]):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert len(a[1]) == len(b[1])


@pytest.mark.parametrize("name, cls", ALL, ids=[n for n, _ in ALL])
def test_interrupted_fit_resumes_exactly(name, cls, tmp_path):
    x, y = data()
    straight = make(cls)
    straight.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)

    backup = str(tmp_path / "backup")
    crashed = make(cls)
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                    callbacks=[keras.callbacks.BackupAndRestore(backup), Interrupt()])  # fmt: skip
    resumed = make(cls)  # new model and optimizer, optimizer not built yet
    assert not resumed.optimizer.built
    resumed.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
                callbacks=[keras.callbacks.BackupAndRestore(backup)])  # fmt: skip
    assert_same(state_of(resumed), state_of(straight))


RESTART = r"""
import json, sys
import numpy as np
import keras
sys.path.insert(0, sys.argv[3])
import test_backup_restore as t
import keras_optzoo as kz

cls = getattr(kz, sys.argv[1])
x, y = t.data()
model = t.make(cls)
callbacks = [keras.callbacks.BackupAndRestore(sys.argv[2])]
if sys.argv[4] == "crash":
    callbacks.append(t.Interrupt())
try:
    model.fit(x, y, batch_size=t.BATCH, epochs=t.EPOCHS, shuffle=False, verbose=0, callbacks=callbacks)
except KeyboardInterrupt:
    sys.exit(3)
weights, opt = t.state_of(model)
print("RESULT " + json.dumps({"weights": [w.tolist() for w in weights], "opt": [np.asarray(v).tolist() for v in opt]}))
"""


# One optimizer (25 s a process pair on JAX): Hybrid, whose state includes the
# curvature slots and the refresh schedule; the in-process test above covers
# every optimizer with a fresh, unbuilt optimizer.
@pytest.mark.parametrize("cls", [kz.Hybrid], ids=lambda c: c.__name__)
def test_resume_after_process_restart(cls, tmp_path):
    """The process dies mid-epoch; a new process (optimizer not built when the
    backup is restored) finishes the run with the uninterrupted state."""
    x, y = data()
    straight = make(cls)
    straight.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)

    script = tmp_path / "restart.py"
    script.write_text(RESTART)
    env = dict(os.environ, KERAS_BACKEND=BACKEND)
    here = os.path.dirname(os.path.abspath(__file__))
    args = [sys.executable, str(script), cls.__name__, str(tmp_path / "backup"), here]
    crash = subprocess.run(args + ["crash"], capture_output=True, text=True, env=env, timeout=300)
    assert crash.returncode == 3, crash.stderr[-3000:]
    resume = subprocess.run(args + ["resume"], capture_output=True, text=True, env=env, timeout=300)
    lines = [ln for ln in resume.stdout.splitlines() if ln.startswith("RESULT ")]
    assert resume.returncode == 0 and lines, resume.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    got = ([np.asarray(w, "float32") for w in result["weights"]], [np.asarray(v) for v in result["opt"]])
    assert_same(got, state_of(straight))
