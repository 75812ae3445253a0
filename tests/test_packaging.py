"""The wheel carries the embedded MNIST files, and an installed copy of the
package loads them offline (no repository checkout around it); the wheel
installs into an empty virtual environment with one backend and trains
there; the version is one number in the metadata, the package and the
CHANGELOG."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import keras_optzoo
from conftest import BACKEND

ROOT = Path(__file__).resolve().parents[1]
FILES = ("keras_optzoo/tasks/data/mnist/t10k-images-idx3-ubyte.gz", "keras_optzoo/tasks/data/mnist/t10k-labels-idx1-ubyte.gz",
         "keras_optzoo/tasks/data/shakespeare/tinyshakespeare-200k.txt.gz",
         "keras_optzoo/tasks/data/shakespeare/README.md")


def _build_wheel(tmp_path):
    """A wheel from the files a clean checkout has (no build outputs, no caches)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "keras_optzoo", source / "keras_optzoo", ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    build = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", build, str(dist)], cwd=source, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dist / proc.stdout.strip().splitlines()[-1]


def test_wheel_ships_mnist_and_the_installed_package_loads_it_offline(tmp_path):
    wheel = _build_wheel(tmp_path)
    assert wheel.name.startswith(f"keras_optzoo-{keras_optzoo.__version__}-"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert set(FILES) <= names, sorted(n for n in names if "data" in n)
        site = tmp_path / "site"
        archive.extractall(site)  # what pip install puts into site-packages
    check = (
        "import keras_optzoo, sys; from keras_optzoo.tasks import mnist; "
        "assert keras_optzoo.__file__.startswith(sys.argv[1]), keras_optzoo.__file__; "
        "(x, y), (xt, yt) = mnist.load_data(source='embedded'); "
        "assert x.shape == (8000, 784) and xt.shape == (2000, 784) and list(y[:3]) == [7, 2, 1]; "
        "from keras_optzoo.tasks import text; assert text.load_shakespeare().startswith('First Citizen:'); print('ok')"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, "-c", check, str(site)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_the_version_is_the_changelogs_newest():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    newest = next(line for line in changelog.splitlines() if line.startswith("## "))
    assert newest.split()[1] == keras_optzoo.__version__, (newest, keras_optzoo.__version__)


SMOKE = """
import importlib.metadata, importlib.util, sys
import numpy as np
import keras, keras_optzoo
from keras_optzoo.tasks import mnist
assert keras.backend.backend() == "jax"
assert importlib.metadata.version("keras-optzoo") == keras_optzoo.__version__
assert keras_optzoo.__file__.startswith(sys.prefix), keras_optzoo.__file__
missing = [m for m in ("tensorflow", "torch") if importlib.util.find_spec(m) is not None]
assert not missing, f"not an empty environment: {missing}"
(x, y), _ = mnist.load_data(source="embedded")
x, y = x[:512], y[:512]
for optimizer, wrap in ((keras_optzoo.optimizers.AdamW(), False), (keras_optzoo.optimizers.SOAP(), False),
                        (keras_optzoo.optimizers.Hybrid(), True)):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model = keras_optzoo.with_curvature(model) if wrap else model
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    loss = model.fit(x, y, batch_size=64, epochs=2, verbose=0).history["loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0], (type(optimizer).__name__, loss)
print("smoke ok", keras.__version__, keras_optzoo.__version__)
"""


def test_the_wheel_installs_into_an_empty_venv_with_one_backend_and_trains(tmp_path):
    """`pip install <wheel> jax` into a new virtual environment (no system
    site-packages), then the smoke test above: version metadata, the shipped
    MNIST files, AdamW, SOAP and a second-order fit. Needs the package index
    (CI has it). Once per suite, in the JAX pass: one backend is the point,
    and JAX is the smallest to install."""
    if BACKEND != "jax":
        pytest.skip(f"runs in the KERAS_BACKEND=jax pass only (one backend is the point; this pass: {BACKEND})")
    wheel = _build_wheel(tmp_path)
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              f"{wheel}", "jax"], capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["KERAS_BACKEND"] = "jax"
    run = subprocess.run([str(python), "-c", SMOKE], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert run.returncode == 0 and "smoke ok" in run.stdout, (run.stdout[-2000:], run.stderr[-3000:])
