"""Every ```python block of the README and of the guides (docs/guides/*.md)
runs, so the examples cannot rot.

Each block is run as the README says, as a complete script: in a fresh
namespace, in an empty working directory, with `__name__ == "__main__"`. A
block whose first line is `# KERAS_BACKEND=<name>` is that backend's idiom
(the custom training loops) and runs in that backend's pass of
`tests/run_all_backends.py`; every other block runs on all three. The
backend-choosing instructions are checked too: `KERAS_BACKEND=... python
train.py` on a README script in a new process, and the README's keras.json.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BACKEND

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
# (file, block) for the README's python blocks and the guides'.
SOURCES = [("README.md", README)] + [(f"docs/guides/{p.name}", p.read_text()) for p in GUIDES]
BLOCKS = [(name, code) for name, text in SOURCES
          for code in re.findall(r"^```python\n(.*?)^```", text, flags=re.M | re.S)]
MARKER = re.compile(r"# KERAS_BACKEND=(\w+)\n")


def _backend_of(code):
    match = MARKER.match(code)
    return match.group(1) if match else None


def _title(code):
    first = next(line for line in code.splitlines() if line.strip() and not line.startswith("# KERAS"))
    return first[:40]


def test_the_readme_has_the_examples_the_issue_asks_for():
    assert len(BLOCKS) >= 7
    assert {_backend_of(code) for _, code in BLOCKS} >= {"tensorflow", "jax", "torch", None}
    front = "\n".join(code for name, code in BLOCKS if name == "README.md")
    # The front page: a first-order model, a second-order one, the curvature logger.
    for needle in ("optimizer=keras_optzoo.optimizers.AdamW(", "keras_optzoo.with_curvature(model)",
                   "CurvatureLogger(", "keras.callbacks.TensorBoard(", "bench.compare(build_model"):
        assert needle in front, needle
    assert "keras_compat=True" in "\n".join(code for _, code in BLOCKS)
    # The use section comes right after the opening paragraph.
    assert README.index("## Use it") < README.index("\n## ", README.index("# keras-optzoo") + 2) + 2


def test_the_readme_is_a_front_page():
    """At most ~300 lines; the manual lives in the guides, each linked from it."""
    assert len(README.splitlines()) <= 300, len(README.splitlines())
    for guide in GUIDES:
        assert f"(docs/guides/{guide.name}" in README, f"the README does not link docs/guides/{guide.name}"


def _block_ids():
    counts = {}
    ids = []
    for name, _ in BLOCKS:
        counts[name] = counts.get(name, 0) + 1
        ids.append(f"{Path(name).stem}-block{counts[name] - 1}")
    return ids


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=_block_ids())
def test_readme_block_runs(index, tmp_path, monkeypatch):
    name, code = BLOCKS[index]
    wanted = _backend_of(code)
    if wanted is not None and wanted != BACKEND:
        pytest.skip(f"the {wanted} idiom; it needs KERAS_BACKEND={wanted} (this run: {BACKEND})")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{name} block {index}", "exec"), {"__name__": "__main__"})


def test_keras_backend_variable_picks_the_backend_of_a_script(tmp_path):
    """`KERAS_BACKEND=<backend> python train.py`, in a new process (the
    README's blocks themselves run in-process above, to keep this test cheap)."""
    (tmp_path / "train.py").write_text("import keras\nimport keras_optzoo\nprint('backend:', keras.backend.backend())\n")
    env = dict(os.environ, KERAS_BACKEND=BACKEND, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"backend: {BACKEND}" in proc.stdout


def test_the_readme_keras_json_selects_its_backend(tmp_path):
    config = json.loads(re.search(r"^```json\n(.*?)^```", README, flags=re.M | re.S).group(1))
    if config["backend"] != BACKEND:
        pytest.skip(f"the README's keras.json names {config['backend']}; checked in the KERAS_BACKEND={config['backend']} run")
    (tmp_path / "keras.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["KERAS_HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", "import keras; print(keras.backend.backend())"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip().splitlines()[-1] == config["backend"], proc.stderr[-2000:]
