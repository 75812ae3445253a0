"""What a user with one backend installed sees: `import keras_optzoo` when
Keras's backend package is missing names the environment variable to set,
and `optzoo-bench` stops before training, with exit code 2, when a package
of the `bench` extra is missing.

A missing package is simulated the way Python itself reports one: with
`sys.modules[name] = None`, `import name` raises ModuleNotFoundError.
"""

import os
import subprocess
import sys

import pytest

from conftest import BACKEND
from keras_optzoo import bench

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_without(package, tmp_path, keras_backend=None):
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(KERAS_HOME=str(tmp_path), PYTHONPATH=os.pathsep.join([ROOT, env.get("PYTHONPATH", "")]))
    if keras_backend:
        env["KERAS_BACKEND"] = keras_backend
    code = f"import sys; sys.modules[{package!r}] = None; import keras_optzoo"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_import_with_kerass_default_backend_missing_says_what_to_set(tmp_path):
    proc = _import_without("tensorflow", tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: keras_optzoo imports Keras, whose backend is 'tensorflow'")
    for words in ("KERAS_BACKEND=", "keras.json", 'pip install "keras-optzoo[tensorflow]"'):
        assert words in last, last


def test_import_with_the_chosen_backend_missing_names_the_variable(tmp_path):
    proc = _import_without(BACKEND, tmp_path, keras_backend=BACKEND)
    last = proc.stderr.strip().splitlines()[-1]
    assert f"whose backend is '{BACKEND}' (KERAS_BACKEND={BACKEND})" in last, last
    assert f'pip install "keras-optzoo[{BACKEND}]"' in last


@pytest.mark.parametrize(
    "package, args",
    [("matplotlib", ["--task", "mnist"]), ("networkx", ["--task", "karate"]), ("networkx", [])],
)
def test_bench_missing_package_exits_2_before_training_naming_the_extra(package, args, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(SystemExit) as info:
        bench.main([*args, "--quick", "--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert package in err and 'pip install "keras-optzoo[bench]"' in err, err
    assert not (tmp_path / "out").exists()  # stopped before any run


def test_bench_does_not_ask_for_networkx_without_karate(monkeypatch):
    monkeypatch.setitem(sys.modules, "networkx", None)
    assert bench._missing_packages("mnist") == []
    assert bench._missing_packages("all") == ["networkx"]
