"""The committed benchmark results, made by one command per backend.

    python benchmarks/results.py --backend jax          # the default run into docs/results/jax/, then the README
    python benchmarks/results.py --render               # only the README section, from docs/results/*/
    python benchmarks/results.py --render --rewrite     # also every backend's tables and plots, from curves.json

Runs `optzoo-bench` (the default suite, tuned protocol, 3 random seeds) with
`--out docs/results/<backend>` and rewrites the README's results section (between
its `results:start` / `results:end` markers) from every backend's
`curves.json` found there: per task, the best optimizer with its learning
rate and margin, and whether a second-order optimizer beat the best tuned
first-order one. Each backend's `results.md` names the command, versions and
date; `defaults.json` records the optimizers' defaults, which
tests/test_bench_results.py compares with the current classes.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
BACKENDS = ("tensorflow", "jax", "torch")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def run(backend, extra):
    command = [sys.executable, "-m", "keras_optzoo.bench", "--backend", backend, "--out", f"docs/results/{backend}",
               *extra]
    print("running", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=ROOT, env=dict(os.environ, KERAS_BACKEND=backend))


REWRITE = """
import json, sys
from keras_optzoo.bench import report
directory = sys.argv[1]
data = json.load(open(directory + "/curves.json"))
report.write_all(data["runs"], data["grid"], directory, sys.argv[2])
"""


def rewrite(backend):
    """The tables, verdicts and plots again from a backend's curves.json (with
    today's report code; no training), in that backend's process."""
    subprocess.run([sys.executable, "-c", REWRITE, f"docs/results/{backend}",
                    f"optzoo-bench --backend {backend} --out docs/results/{backend}"], check=True, cwd=ROOT,
                   env=dict(os.environ, KERAS_BACKEND=backend))


def _winner(runs, task):
    """(best, runner-up) by mean final validation loss on `task`, with means and stds."""
    from keras_optzoo.bench import study

    return study.Comparison([r for r in runs if r["task"] == task and r["regularization"] == "none"], [], "").best()


def render():
    """The README section from every backend's committed runs."""
    from keras_optzoo.bench import optimizers as bench_optimizers
    from keras_optzoo.bench import report, verdicts

    found = {b: json.loads((RESULTS / b / "curves.json").read_text())["runs"] for b in BACKENDS
             if (RESULTS / b / "curves.json").is_file()}
    if not found:
        raise SystemExit(f"no results under {RESULTS}/<backend>/: run with --backend first")
    made = {b: json.loads((RESULTS / b / "defaults.json").read_text())["versions"] for b in found}
    tasks = report._tasks([r for runs in found.values() for r in runs])
    first = bench_optimizers.FIRST_ORDER
    second = tuple(n for n in bench_optimizers.NAMES if n not in first)
    header = ["Task"] + [f"{b} ({made[b]['date']})" for b in found]
    rows = []
    for task in tasks:
        cells = [task]
        for backend, runs in found.items():
            tuned = [r for r in runs if r["protocol"] == "tuned"]
            best = _winner(tuned, task)
            margin = "" if best.margin_std is None else f", {best.margin_std:.1f} sd ahead of {best.runner_up}"
            claim = verdicts.second_order_claim([r for r in tuned if r["task"] == task], first, second)
            answer = claim.parts[0].text.split(".")[0] if claim.parts else "-"
            cells.append(f"{best.optimizer} (lr {best.learning_rate:g}): {best.validation_loss:.3f}{margin}; "
                         f"second order beats first: {answer}")
        rows.append(cells)
    lines = [START, "", "Best tuned optimizer per task (lowest mean final validation loss over 3 random seeds; "
             "margin over the runner-up in standard deviations) and whether a second-order optimizer beat the best "
             "first-order one in steps and seconds to the target. Made by `python benchmarks/results.py --backend "
             "<name>` (the default run, 2 CPU cores); versions and full tables: "
             + ", ".join(f"[{b}](docs/results/{b}/results.md)" for b in found) + ".", "",
             report._table(header, rows), "", END]
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} section")
    before, rest = text.split(START, 1)
    readme.write_text(before + "\n".join(lines) + rest.split(END, 1)[1])
    print(f"README results section: {', '.join(found)}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=BACKENDS, help="run the default benchmark on this backend first")
    p.add_argument("--render", action="store_true", help="only rewrite the README section")
    p.add_argument("--rewrite", action="store_true",
                   help="with --render: first remake every backend's tables and plots from its curves.json")
    args, extra = p.parse_known_args(argv)
    if not args.backend and not args.render:
        p.error("give --backend NAME (run, then render) or --render")
    if args.backend:
        run(args.backend, extra)
    if args.rewrite:
        for backend in BACKENDS:
            if (RESULTS / backend / "curves.json").is_file():
                rewrite(backend)
    render()


if __name__ == "__main__":
    main()
