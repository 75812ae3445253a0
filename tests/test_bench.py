"""`optzoo-bench --quick` end to end, and its bad-argument handling."""

import csv
import re
import subprocess
import sys

import pytest

from conftest import BACKEND
from keras_optzoo import bench


def test_quick_run_writes_csv_markdown_and_plots(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "keras_optzoo.bench", "--quick", "--data", "embedded",
         "--optimizers", "gd,sgd,momentum,adam", "--seeds", "2", "--adaptive-stopping",
         "--regularization", "none,l2", "--backend", BACKEND, "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "results.csv")))
    # mnist: 2 regularizations x 4 optimizers x 2 seeds; karate: 4 x 2.
    assert len(rows) == 16 + 8
    from keras_optzoo.bench import report

    assert list(rows[0]) == report.CSV_COLUMNS
    assert {r["backend"] for r in rows} == {BACKEND}
    assert {r["task"] for r in rows} == {"mnist", "karate"}
    for r in rows:
        assert float(r["final_train_loss"]) > 0 and 0 <= float(r["test_accuracy"]) <= 1
        assert int(r["epochs_run"]) <= {"mnist": 2, "karate": 5}[r["task"]]
        assert (r["test_auc"] != "") == (r["task"] == "karate")
    gd = [r for r in rows if r["optimizer"] == "gd" and r["task"] == "mnist"]
    assert {r["batch_size"] for r in gd} == {"1000"}  # full batch
    md = (out / "results.md").read_text()
    for heading in ("Table 1", "Table 2", "Table 3", "seed 001"):
        assert heading in md
    for task in ("mnist", "karate"):
        for plot in ("loss_curves", "test_accuracy", "time_per_epoch"):
            assert (out / f"{task}_{plot}.png").stat().st_size > 5000
    assert proc.stdout.count(" seed ") >= 24  # one summary line per run


@pytest.mark.parametrize(
    "args, words",
    [
        (["--task", "cifar"], ["--task", "mnist", "karate"]),
        (["--optimizers", "adam,lbfgs"], ["--optimizers", "lbfgs", "amsgrad"]),
        (["--backend", "mxnet"], ["--backend", "tensorflow"]),
        (["--epochs", "0"], ["--epochs", "positive integer"]),
        (["--batch-size", "-4"], ["--batch-size"]),
        (["--seeds", "two"], ["--seeds"]),
        (["--lr", "nan"], ["--lr"]),
        (["--regularization", "l3"], ["--regularization", "dropout"]),
        (["--out", "{file}/results"], ["--out", "writable"]),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(args, words, capsys, tmp_path):
    a_file = tmp_path / "plain-file"
    a_file.write_text("")
    args = [a.format(file=a_file) for a in args]
    with pytest.raises(SystemExit) as info:
        bench.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err


UPDATE_STEP = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "benchmarks" / "update_step.py")


def _verdict_agrees_with_its_ratios(cell):
    """`met (...)` / `NOT met (...)`: the word must follow from the bounds
    and ratios written inside the parentheses ("<= 1.1x optax: 0.97x",
    ">= 3x faster than Keras: 6.4x"), all of which must hold for "met"."""
    match = re.fullmatch(r"(met|NOT met) \((.+)\)", cell)
    assert match, f"no verdict in {cell!r}"
    checks = re.findall(r"(<=|>=) ([\d.]+)x[^:]*: ([\d.]+)x", match.group(2))
    assert checks, f"no bound in {cell!r}"
    holds = all(float(r) <= float(b) if op == "<=" else float(r) >= float(b) for op, b, r in checks)
    return holds == (match.group(1) == "met")


def test_update_step_benchmark_runs_and_reports_ratios(tmp_path):
    """benchmarks/update_step.py on this backend at a small size: one row per
    optimizer with ours, Keras, the native libraries and the target verdict."""
    out = tmp_path / "performance.md"
    cmd = [sys.executable, UPDATE_STEP, "--backends", BACKEND, "--sizes", "20K", "--optimizers", "adam,momentum",
           "--repeats", "2", "--warmup", "1", "--no-e2e", "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith("| adam |") or ln.startswith("| momentum |")]
    assert len(rows) == (4 if BACKEND == "tensorflow" else 2)  # TF: tf.function and XLA rows
    native = {"jax": "optax", "torch": "fused", "tensorflow": None}[BACKEND]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[3]) > 0 and float(cells[4]) > 0  # ours ms, Keras ms
        assert _verdict_agrees_with_its_ratios(cells[-1]), cells[-1]
        if native:
            assert native in cells[5]
    assert "Targets (issue 8)" in text


@pytest.mark.parametrize(
    "args, words",
    [(["--sizes", "lots"], "--sizes"), (["--optimizers", "adamax"], "--optimizers"), (["--backends", "mxnet"], "--backends")],
)
def test_update_step_benchmark_bad_arguments_exit_2(args, words):
    proc = subprocess.run([sys.executable, UPDATE_STEP, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert words in proc.stderr
