"""The committed benchmark results are never stale: every results directory
under docs/results/<backend>/ records the optimizers' defaults it ran with,
and a class whose defaults changed since fails here (re-run
`python benchmarks/results.py --backend <name>`). The README's results
section is the one that script renders from those directories."""

import json
from pathlib import Path

import pytest

from keras_optzoo.bench import optimizers as bench_optimizers
from keras_optzoo.bench import report

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BACKENDS = ("tensorflow", "jax", "torch")
COMMITTED = [b for b in BACKENDS if (RESULTS / b / "defaults.json").is_file()]


def test_every_backend_has_committed_results():
    missing = [b for b in BACKENDS if b not in COMMITTED]
    assert not missing, f"no docs/results/<backend>/defaults.json for {missing}: run benchmarks/results.py"


@pytest.mark.parametrize("backend", COMMITTED)
def test_committed_results_ran_with_the_current_defaults(backend):
    recorded = json.loads((RESULTS / backend / "defaults.json").read_text())
    stale = report.stale_defaults(recorded["optimizers"])
    assert not stale, (f"docs/results/{backend} ran with other defaults than today's classes: {stale}; re-run "
                       f"python benchmarks/results.py --backend {backend}")
    md = (RESULTS / backend / "results.md").read_text()
    assert f"({backend} backend)" in md and recorded["versions"]["date"] in md and "keras-optzoo" in md


def test_a_changed_default_is_caught():
    """The check can fail: a recorded learning rate or beta that differs, a
    missing key and an unknown optimizer are each reported."""
    now = report.defaults([{"optimizer": "adam"}, {"optimizer": "soap"}])
    changed = json.loads(json.dumps(now))
    changed["adam"]["learning_rate"] *= 3
    changed["soap"]["beta_2"] = 0.99
    del changed["soap"]["epsilon"]
    changed["adamx"] = {}
    stale = report.stale_defaults(changed)
    assert len(stale) == 4 and any(s.startswith("adam.learning_rate") for s in stale), stale
    assert "soap.beta_2: 0.99 -> 0.95" in stale and "adamx: no longer a benchmark optimizer" in stale
    assert report.stale_defaults(now) == []


def test_the_readme_results_section_is_rendered_from_the_committed_results():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("<!-- results:start -->", 1)[1].split("<!-- results:end -->", 1)[0]
    for backend in COMMITTED:
        assert f"(docs/results/{backend}/results.md)" in section, backend
        runs = json.loads((RESULTS / backend / "curves.json").read_text())["runs"]
        for task in {r["task"] for r in runs}:
            assert f"| {task} |" in section, task
    assert set(bench_optimizers.AVAILABLE) >= {n for b in COMMITTED for n in
                                                json.loads((RESULTS / b / "defaults.json").read_text())["optimizers"]}
