"""The API reference (mkdocs.yml, docs/api/*.md; built with
`mkdocs build --strict` in .ci/run) names every public object, and each
of those has a docstring to render."""

import inspect
import re
from pathlib import Path

import keras_optzoo
from keras_optzoo import callbacks, curvature, optimizers, tasks

API = Path(__file__).resolve().parents[1] / "docs" / "api"
PACKAGES = {"optimizers": optimizers, "callbacks": callbacks, "curvature": curvature}


def _documented():
    names = set()
    for page in API.glob("*.md"):
        names.update(re.findall(r"^::: *([\w.]+)", page.read_text(), flags=re.M))
    return names


def test_every_public_name_is_in_the_api_reference():
    documented = _documented()
    expected = {f"keras_optzoo.{pkg}.{name}" for pkg, module in PACKAGES.items() for name in module.__all__}
    expected |= {f"keras_optzoo.tasks.{name}" for name in tasks.__all__}
    expected.add("keras_optzoo.bench")
    assert not expected - documented, f"public names missing from docs/api/*.md: {sorted(expected - documented)}"
    # Top-level re-exports are the objects documented under their package.
    for name in keras_optzoo.__all__:
        obj = getattr(keras_optzoo, name)
        assert inspect.ismodule(obj) or any(getattr(m, name, None) is obj for m in PACKAGES.values()), name


def test_documented_names_exist_and_have_docstrings():
    for dotted in _documented():
        module_name, _, attr = dotted.rpartition(".")
        try:
            obj = __import__(dotted, fromlist=["_"])
        except ImportError:
            obj = getattr(__import__(module_name, fromlist=["_"]), attr)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            assert (obj.__doc__ or "").strip(), f"{dotted} has no docstring"
            assert "{{" not in obj.__doc__, f"{dotted}: unfilled template in its docstring"
