"""The wheel carries the embedded MNIST files, and an installed copy of the
package loads them offline (no repository checkout around it)."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ("keras_optzoo/tasks/data/mnist/t10k-images-idx3-ubyte.gz", "keras_optzoo/tasks/data/mnist/t10k-labels-idx1-ubyte.gz")


def test_wheel_ships_mnist_and_the_installed_package_loads_it_offline(tmp_path):
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
    wheel = dist / proc.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert set(FILES) <= names, sorted(n for n in names if "data" in n)
        site = tmp_path / "site"
        archive.extractall(site)  # what pip install puts into site-packages
    check = (
        "import keras_optzoo, sys; from keras_optzoo.tasks import mnist; "
        "assert keras_optzoo.__file__.startswith(sys.argv[1]), keras_optzoo.__file__; "
        "(x, y), (xt, yt) = mnist.load_data(source='embedded'); "
        "assert x.shape == (8000, 784) and xt.shape == (2000, 784) and list(y[:3]) == [7, 2, 1]; print('ok')"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    run = subprocess.run([sys.executable, "-c", check, str(site)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
