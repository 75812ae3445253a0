"""The package's layering and its uses of private Keras names.

Layers, bottom to top: `_validation`/`_keras_compat` < `backend` <
`optimizers` < `curvature` < `callbacks` < `tasks` < `bench`. A module may
import its own layer or lower ones; tensorflow/jax/torch only in `backend`.
"""

import ast
import importlib
from pathlib import Path

import pytest

import keras
from conftest import BACKEND
from keras_optzoo import _keras_compat

PACKAGE = Path(__file__).resolve().parents[1] / "keras_optzoo"
LAYERS = {"_validation": 0, "_keras_compat": 0, "backend": 1, "optimizers": 2, "curvature": 3,
          "callbacks": 4, "tasks": 5, "bench": 6}  # fmt: skip
FRAMEWORKS = ("tensorflow", "jax", "torch")


def _unit(module):
    """'keras_optzoo.backend.jax.hvp' -> 'backend'; the package itself -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__init__" else None


def _imports():
    """(importing unit, file, imported module) for every import in the package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        unit = _unit(".".join(relative.parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                yield unit, path.relative_to(PACKAGE.parent), name


def test_every_module_imports_only_its_own_layer_or_lower():
    upward = []
    for unit, path, name in _imports():
        target = _unit(name) if name.startswith("keras_optzoo.") else None
        if unit is None or target is None or target not in LAYERS:
            continue
        if LAYERS[target] > LAYERS[unit]:
            upward.append(f"{path} imports {name} ({unit} is below {target})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_subpackages():
    edges = {}
    for unit, _, name in _imports():
        target = _unit(name) if name.startswith("keras_optzoo.") else None
        if unit and target and target != unit and target in LAYERS:
            edges.setdefault(unit, set()).add(target)
    cycles = [(a, b) for a, targets in edges.items() for b in targets if a in edges.get(b, set())]
    assert not cycles, cycles


def test_frameworks_are_imported_only_in_backend():
    outside = [f"{path}: {name}" for unit, path, name in _imports()
               if name.split(".")[0] in FRAMEWORKS and unit != "backend"]  # fmt: skip
    assert not outside, outside


def test_backend_files_are_split_by_job_and_short():
    for name in FRAMEWORKS:
        files = sorted(p.name for p in (PACKAGE / "backend" / name).glob("*.py"))
        # A job may be split into parts named after it (kernels_second_order.py,
        # hvp_moments.py) to keep each file short.
        jobs = [f for f in files if not f.startswith(("kernels_", "hvp_"))]
        # data.py: TensorFlow's fast path for in-memory arrays (the benchmark's Trainer).
        expected = ["__init__.py", *(["data.py"] if name == "tensorflow" else []), "hvp.py", "kernels.py",
                    "train_step.py"]
        assert jobs == expected, (name, files)
        for path in (PACKAGE / "backend" / name).glob("*.py"):
            assert len(path.read_text().splitlines()) <= 150, f"{path} is too long to read in one sitting"


def test_private_keras_names_appear_only_in_the_compat_module():
    used = {attr for _, attr in _keras_compat.PRIVATE_NAMES} - {"_backend_update_step", "_apply_weight_decay"}
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "_keras_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in used:
                offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def _owner(kind):
    """A real instance of each kind of object whose private names we use."""
    if kind in ("Model", "JAXTrainer"):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
        return model
    if kind == "Optimizer":
        optimizer = keras.optimizers.SGD()
        optimizer.build([keras.Variable([1.0, 2.0])])
        return optimizer
    if kind == "MonitorCallback":
        return keras.callbacks.EarlyStopping()
    if kind == "TensorFlowNN":
        return importlib.import_module("keras.src.backend.tensorflow.nn")
    raise AssertionError(kind)


# JAX's trainer exists only on the JAX backend: that name is checked there.
# TensorFlow's backend module is imported only on TensorFlow.
ONLY_ON = {"JAXTrainer": "jax", "TensorFlowNN": "tensorflow"}
CHECKED = [(o, n) for o, n in _keras_compat.PRIVATE_NAMES if ONLY_ON.get(o, BACKEND) == BACKEND]


@pytest.mark.parametrize("owner, name", CHECKED, ids=[f"{o}.{n}" for o, n in CHECKED])
def test_each_private_keras_name_we_use_still_exists(owner, name):
    assert hasattr(_owner(owner), name), (
        f"Keras {keras.__version__} has no {owner}.{name}, which keras_optzoo/_keras_compat.py uses "
        f"(checked against Keras {_keras_compat.CHECKED_KERAS}). Update the compat function that wraps it."
    )
