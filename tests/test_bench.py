"""`optzoo-bench --quick` end to end, and its bad-argument handling."""

import csv
import re
import subprocess
import sys

import pytest

from conftest import BACKEND
from keras_optzoo import bench
from keras_optzoo.bench import protocol as protocol_mod


def _bench(tmp_path, *args):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "keras_optzoo.bench", "--quick", "--backend", BACKEND,
                           "--out", str(out), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out, proc.stdout


def test_quick_run_with_both_protocols_writes_tables_verdicts_and_plots(tmp_path):
    out, stdout = _bench(tmp_path, "--protocol", "tuned,fixed", "--optimizers", "sgd,hybrid", "--seeds", "2",
                         "--task", "mnist-mlp,karate", "--regularization", "none,l2",
                         "--regularization-optimizers", "sgd")
    from keras_optzoo.bench import report
    from keras_optzoo.bench.optimizers import AVAILABLE

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert list(rows[0]) == report.CSV_COLUMNS
    # Per protocol: mnist-mlp 2 optimizers + sgd with L2, karate 2 optimizers; 2 random seeds each.
    assert len(rows) == 2 * (3 + 2) * 2
    assert {r["backend"] for r in rows} == {BACKEND} and {r["protocol"] for r in rows} == {"tuned", "fixed"}
    assert [r["task"] for r in rows][:1] == ["mnist-mlp"]  # the stable task order
    grid = list(csv.DictReader(open(out / "grid.csv")))
    for r in rows:
        assert 0 <= float(r["test_accuracy_pct"]) <= 100 and float(r["final_validation_loss"]) > 0
        assert (r["test_auc"] != "") == (r["task"] == "karate")
        if r["protocol"] == "fixed":
            assert float(r["learning_rate"]) == 0.01
        else:  # the chosen grid point, the same for every random seed and for the L2 run
            chosen = [g for g in grid if g["task"] == r["task"] and g["optimizer"] == r["optimizer"]
                      and g["chosen"] == "True"]
            assert [float(g["learning_rate"]) for g in chosen] == [float(r["learning_rate"])]
            # A grid point, or one added past the grid's edge (then every point between is there).
            tried = sorted(float(g["learning_rate"]) for g in grid
                           if g["task"] == r["task"] and g["optimizer"] == r["optimizer"])
            declared = AVAILABLE[r["optimizer"]].grid()
            assert set(declared) <= set(tried) and float(r["learning_rate"]) in tried
            assert all(b / a == pytest.approx(10 ** 0.5, rel=0.01) for a, b in zip(tried, tried[1:]))
            at_edge = float(r["learning_rate"]) in (tried[0], tried[-1])
            grown = [g for g in grid if g["task"] == r["task"] and g["optimizer"] == r["optimizer"] and g["grown"] == "True"]
            assert (r["learning_rate_at_edge"] == "True") == (at_edge and len(grown) == protocol_mod.GROW)
        if r["steps_to_target"]:
            assert int(r["steps_to_target"]) == int(r["epochs_to_target"]) * int(r["steps_per_epoch"])
    assert {r["batch_size"] for r in rows if r["optimizer"] == "gd"} <= {r["train_size"] for r in rows}
    md = (out / "results.md").read_text()
    for words in ("Table 1", "Table 2", "Table 3", "paper 001", "Steps to target", "## Verdicts",
                  "tuned protocol: ", "fixed protocol: ", "Learning-rate selection"):
        assert words in md, words
    assert "seed 0" not in md.replace("random seed 0", "")  # "seed" only for random seeds
    assert re.search(r"\*\*(tuned|fixed) protocol: (holds|does not hold|mixed)\*\*", md)
    for protocol in ("tuned", "fixed"):
        for task in ("mnist-mlp", "karate"):
            for plot in ("loss_curves", "test_accuracy", "time_to_target"):
                assert (out / f"{protocol}_{task}_{plot}.png").stat().st_size > 5000
    assert "ETA" in stdout and stdout.count("random seed") >= len(rows)


def test_quick_cnn_run_fills_epochs_to_converge(tmp_path):
    out, _ = _bench(tmp_path, "--protocol", "fixed", "--task", "mnist-cnn", "--optimizers", "sgd",
                    "--epochs", "3", "--stop-threshold", "10")
    (row,) = csv.DictReader(open(out / "results.csv"))
    assert row["model"].startswith("cnn-") and row["epochs_to_converge"] == "2"  # any improvement < 1000 %


def test_quick_shakespeare_run_trains_the_transformer_first_and_second_order(tmp_path):
    """The character Transformer through the CLI: Adam, and Sophia-H through
    with_curvature (attention differentiated twice on every backend)."""
    out, _ = _bench(tmp_path, "--protocol", "fixed", "--task", "shakespeare", "--optimizers", "adam,sophiah",
                    "--lr", "0.003", "--epochs", "2")
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["optimizer"] for r in rows] == ["adam", "sophiah"]
    for r in rows:
        # 400 windows: 40 test, 288 train (9 steps of 32), 72 validation; log(62) = 4.13 at the start.
        assert r["model"] == "char-transformer-64" and r["steps_per_epoch"] == "9" and r["train_size"] == "288"
        assert float(r["final_validation_loss"]) < 4.0 and float(r["step_time_s"]) > 0
    assert (out / "fixed_shakespeare_loss_curves.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--task", "cifar"], ["--task", "mnist-mlp", "mnist-cnn", "karate"]),
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


SECOND_ORDER_COST = UPDATE_STEP.replace("update_step.py", "second_order_cost.py")


def test_second_order_cost_floor_hvp_matches_finite_differences():
    """The HVP that benchmarks/second_order_cost.py times as its floor is the
    Hessian's: central differences of the gradient along the probe, on a
    Dense-tanh-BatchNormalization-Dense model in training mode (on
    TensorFlow, Keras's own moments would leave the first kernel's HVP
    10-20 % off)."""
    import importlib.util

    import keras
    import numpy as np

    spec = importlib.util.spec_from_file_location("second_order_cost", SECOND_ORDER_COST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(3, activation="softmax")])  # fmt: skip
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 5)).astype("float32"), rng.integers(0, 3, 16)
    probe = [rng.choice(np.float32([-1, 1]), size=tuple(v.shape)) for v in model.trainable_variables]
    grad, grad_and_hvp = module.floor_functions(model, x, y, probe)
    hvp = np.concatenate([h.ravel() for h in grad_and_hvp()])
    weights, eps = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables], 3e-3
    sides = []
    for sign in (1, -1):
        for v, w, z in zip(model.trainable_variables, weights, probe):
            v.assign(w + sign * eps * z)
        sides.append(np.concatenate([g.ravel() for g in grad()]))
    reference = (sides[0] - sides[1]) / (2 * eps)
    assert np.linalg.norm(hvp - reference) <= 1e-2 * np.linalg.norm(reference)
