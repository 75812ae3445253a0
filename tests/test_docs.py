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


# Where each section of the README went when it became a front page (it had
# 1,249 lines, at commit 9afc836): old heading -> (file, a line that file must
# still hold). A section dropped or renamed without updating this map fails.
MOVED = {
    "Use it": ("README.md", "## Use it"),
    "Install": ("README.md", "### Install"),
    "Choose the backend": ("README.md", "### Choose the backend"),
    "A first-order optimizer in your model": ("README.md", "### A first-order optimizer in your model"),
    "A second-order optimizer: one more line, `with_curvature`":
        ("README.md", "### A second-order optimizer: one more line, `with_curvature`"),
    "Your own training loop": ("docs/guides/training-loops.md", "# Your own training loop"),
    "See the curvature in TensorBoard": ("README.md", "### See the curvature in TensorBoard"),
    "API reference": ("docs/index.md", "## API reference"),
    "Coming from keras.optimizers": ("docs/guides/coming-from.md", "## From keras.optimizers"),
    "Performance tips": ("docs/guides/performance.md", "## Performance tips"),
    "Set up (working on keras-optzoo itself)": ("README.md", "## Set up (working on keras-optzoo itself)"),
    "The benchmark: which optimizer, on my backend?": ("docs/guides/benchmark.md", "**Protocols.**"),
    "Results of the default run": ("docs/guides/benchmark.md", "## Results of the default run"),
    # The verdicts are generated with each backend's results (benchmarks/results.py).
    "Verdicts (both protocols)": ("docs/results/jax/results.md", "## Verdicts"),
    "paper 000: the Hybrid method": ("docs/results/jax/results.md", "### paper 000: the Hybrid method"),
    "paper 000, Table 2": ("docs/results/jax/results.md", "### paper 000, Table 2"),
    "paper 001: AdaGrad, AMSGrad and Adam": ("docs/results/jax/results.md", "### paper 001: AdaGrad, AMSGrad and Adam"),
    "Performance: the update step against Keras, optax and torch.optim":
        ("docs/guides/performance.md", "## Performance: the update step against Keras, optax and torch.optim"),
    "The optimizers": ("docs/guides/optimizers.md", "# The optimizers and their equations"),
    "Second-order optimizers": ("docs/guides/second-order.md", "## Second-order optimizers"),
    "Kronecker-factored: SOAP and Shampoo": ("docs/guides/second-order.md", "## Kronecker-factored: SOAP and Shampoo"),
    "Curvature tools": ("docs/guides/curvature.md", "# Curvature tools"),
    "(Curvature tools) Where we differ from a paper or a library":
        ("docs/guides/optimizers.md", "## Where we differ from a paper or a library, on purpose"),
    "Guarantees": ("docs/guides/guarantees.md", "## Guarantees"),
    "(Guarantees) Versions": ("docs/guides/guarantees.md", "## Versions"),
    "What the tests check (every backend)": ("docs/guides/guarantees.md", "## What the tests check (every backend)"),
    "Callbacks": ("docs/guides/curvature.md", "## Callbacks"),
    "Examples": ("docs/guides/contributing.md", "## Examples"),
    "Layout": ("docs/guides/contributing.md", "## Layout"),
}


def test_every_section_of_the_long_readme_is_somewhere():
    root = API.parents[1]
    for section, (path, line) in MOVED.items():
        lines = (root / path).read_text().splitlines()
        assert any(l.strip() == line or l.startswith(line) for l in lines), f"{section!r}: {path} lost {line!r}"
    # ... and every guide is in the docs site's navigation.
    nav = (root / "mkdocs.yml").read_text()
    for guide in (root / "docs" / "guides").glob("*.md"):
        assert f"guides/{guide.name}" in nav, guide.name
