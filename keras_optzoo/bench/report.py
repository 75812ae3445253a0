"""Writes results.csv (one row per final run), grid.csv (the tuned protocol's
learning-rate search), results.md (paper 000's Tables 1-3, paper 001's
accuracy comparison, time to target, the grid, and the verdicts) and the
plots. Every loss and accuracy names its split (train, validation, test);
accuracies are percentages everywhere."""

import csv
import json
import math
import os

from keras_optzoo.bench import analysis, verdicts
from keras_optzoo.bench import optimizers as bench_optimizers
from keras_optzoo.bench.protocol import GROW
from keras_optzoo.bench import tasks as bench_tasks

PAPERS = {
    "paper 000": "Muniasamy et al. (2024), \"Optimization in Neural Networks with Mathematics: Efficiency in "
                 "Architectures of Deep Learning\" (the Hybrid method; Tables 1-3; adaptive stopping)",
    "paper 001": "Salahshour and Fazly, \"Bridging the Gap: The Interplay of Deep Learning and Optimization "
                 "Techniques\" (MNIST and Karate Club, every optimizer at lr 0.01)",
}

CSV_COLUMNS = [
    "task", "model", "optimizer", "regularization", "protocol", "seed", "backend", "learning_rate",
    "learning_rate_at_edge", "batch_size", "train_size", "epochs", "epochs_run", "steps_per_epoch", "epochs_to_converge",
    "final_train_loss", "final_validation_loss", "best_validation_loss", "test_loss",
    "final_train_accuracy_pct", "final_validation_accuracy_pct", "test_accuracy_pct", "test_auc",
    "target_validation_loss", "epochs_to_target", "steps_to_target", "seconds_to_target",
    "step_time_s", "time_per_epoch_s", "total_time_s",
]
GRID_COLUMNS = ["task", "optimizer", "learning_rate", "rung_epochs", "validation_loss_at_rung", "survived",
                "epochs_run", "final_validation_loss", "chosen", "grown", "at_edge"]


def lr_cell(record):
    """The chosen learning rate, marked when it is still at the edge of its grown grid."""
    return f"{record['learning_rate']:g}" + (" (edge)" if record.get("learning_rate_at_edge") else "")


def _write_csv(rows, columns, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _ordered(runs, key="optimizer"):
    """Groups of runs by optimizer in the benchmark's order (or by regularization)."""
    order = bench_optimizers.NAMES if key == "optimizer" else ("none", "l1", "l2", "dropout")
    groups = analysis.groups(runs, key)
    return [(name, groups[(name,)]) for name in order if (name,) in groups]


def _tasks(runs):
    """The built-in tasks in their order, then a user's, in the order run."""
    present = list(dict.fromkeys(r["task"] for r in runs))
    return [t for t in bench_tasks.ORDER if t in present] + [t for t in present if t not in bench_tasks.ORDER]


def _s(group, key, fmt="{:.4f}", none="-"):
    return analysis.stat(group, key).format(fmt, none)


def _test_columns(runs):
    """(header, key, format) of the test metrics the runs have: loss when there is no accuracy."""
    columns = [("Test accuracy (%)", "test_accuracy_pct", "{:.2f}"), ("Test AUC", "test_auc", "{:.3f}")]
    found = [c for c in columns if any(r.get(c[1]) is not None for r in runs)]
    if not found and any(r.get("test_loss") is not None for r in runs):
        found = [("Test loss", "test_loss", "{:.4f}")]
    return found


def _convergence(runs, epochs):
    tests = _test_columns(runs)
    header = ["Optimizer", "Learning rate", "Epochs run", "Epochs to converge", "Final training loss",
              "Final validation loss"] + [h for h, _, _ in tests]
    rows = [[bench_optimizers.label(name), lr_cell(group[0]), _s(group, "epochs_run", "{:.0f}"),
             _s(group, "epochs_to_converge", "{:.1f}", f"not within {epochs}"), _s(group, "final_train_loss"),
             _s(group, "final_validation_loss")] + [_s(group, key, fmt) for _, key, fmt in tests]
            for name, group in _ordered(runs)]
    return _table(header, rows)


def _timing(runs):
    header = ["Optimizer", "Steps to target", "Seconds to target", "Step time (ms)", "Time per epoch (s)",
              "Total time (s)"]
    rows = [[bench_optimizers.label(name), _s(group, "steps_to_target", "{:.0f}", "not reached"),
             _s(group, "seconds_to_target", "{:.2f}", "not reached"),
             analysis.Stat([1e3 * r["step_time_s"] for r in group]).format("{:.2f}"),
             _s(group, "time_per_epoch_s", "{:.3f}"), _s(group, "total_time_s", "{:.2f}")]
            for name, group in _ordered(runs)]
    return _table(header, rows)


def _regularization(runs):
    rows = [[reg, bench_optimizers.label(name), _s(g, "final_train_loss"), _s(g, "final_validation_loss"),
             _s(g, "test_accuracy_pct", "{:.2f}")]
            for name, group in _ordered(runs) if len({r["regularization"] for r in group}) > 1
            for reg, g in _ordered(group, "regularization")]
    return _table(["Regularization", "Optimizer", "Final training loss (with the penalty)",
                   "Final validation loss (with the penalty)", "Test accuracy (%)"], rows)


def _grid(grid_rows, task):
    rows = []
    for name in bench_optimizers.NAMES:
        points = [g for g in grid_rows if g["task"] == task and g["optimizer"] == name]
        if not points:
            continue
        cells = []
        for g in points:
            loss = g["final_validation_loss"] if g["survived"] else g["validation_loss_at_rung"]
            cell = (f"{g['learning_rate']:g}: {loss:.4f}" + ("" if g["survived"] else " (stopped)")
                    + (" (added beyond the grid)" if g.get("grown") else "") + (" (edge)" if g.get("at_edge") else ""))
            cells.append(f"**{cell}**" if g["chosen"] else cell)
        rows.append([bench_optimizers.label(name), "; ".join(cells)])
    rung = next(g["rung_epochs"] for g in grid_rows if g["task"] == task)
    return (f"Validation loss of each grid point (\"stopped\": after the first {rung} epoch(s), "
            f"successive halving), the chosen one in bold; a choice at an edge of the grid grows it one point at a "
            f"time beyond that edge (at most {GROW}), \"(edge)\" where it is still there.\n\n" + _table(["Optimizer", "Learning rate: validation loss"], rows))


def protocol_section(runs, grid_rows, protocol):
    out = [f"## {protocol.capitalize()} protocol"]
    for task in _tasks(runs):
        task_runs = [r for r in runs if r["task"] == task]
        plain = [r for r in task_runs if r["regularization"] == "none"]
        title = bench_tasks.title(task, task_runs)
        target = plain[0]["target_validation_loss"] if plain else None
        out.append(f"\n### {task}: {title}\n")
        out.append(f"Convergence (paper 000, Table 1; epochs to converge by AdaptiveStopping's rule on the "
                   f"training loss) and test accuracy (paper 001, Figs. 2 and 4):\n")
        out.append(_convergence(plain, plain[0]["epochs"]))
        target_text = "-" if target is None else f"{target:.4f}"
        out.append(f"\nTime to the target validation loss {target_text} (AlgoPerf's time-to-result, checked at "
                   f"the end of each epoch; seconds are those steps at the steady time per training step, "
                   f"compilation and validation passes left out) and time (paper 000, Table 3):\n")
        out.append(_timing(plain))
        if len({r["regularization"] for r in task_runs}) > 1:
            out.append(f"\nRegularization (paper 000, Table 2; L1/L2 0.001 on both kernels, Dropout 0.5), at "
                       f"each optimizer's learning rate above:\n")
            out.append(_regularization(task_runs))
        if any(g["task"] == task for g in grid_rows):
            out.append(f"\nLearning-rate selection on the validation split (random seed 0):\n")
            out.append(_grid(grid_rows, task))
    return "\n".join(out)


def verdict_section(runs_by_protocol):
    out = ["## Verdicts",
           "\nA comparison is won when the mean over random seeds is better by more than the larger of the two "
           "standard deviations; a claim holds when every comparison is won, does not hold when none is, and "
           "is mixed otherwise; over tasks, it holds when it holds on every task, does not hold when it does not hold "
           "on any, and is mixed otherwise."]
    first = tuple(n for n in bench_optimizers.FIRST_ORDER)
    second = tuple(n for n in bench_optimizers.NAMES if n not in first)
    claims = {p: verdicts.claims(runs, first, second) for p, runs in runs_by_protocol.items()}
    for i, claim in enumerate(next(iter(claims.values()))):
        out.append(f"\n### {claim.paper}: {claim.statement}\n\nCompared: {claim.rule}.\n")
        for protocol, found in claims.items():
            c = found[i]
            out.append(f"- **{protocol} protocol: {c.verdict}**")
            out += [f"  - {p.scope}: **{p.verdict}**; {p.text}" for p in c.parts]
    return "\n".join(out)


def versions():
    """What made the numbers: package versions, Python, CPU count, date (UTC)."""
    import datetime
    import importlib.metadata
    import platform

    import keras

    backend = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[keras.backend.backend()]
    import keras_optzoo

    out = {"keras-optzoo": keras_optzoo.__version__, "keras": keras.__version__}
    for package in (backend, "numpy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = importlib.metadata.version(package + "-cpu")
    out.update(python=platform.python_version(), cpus=os.cpu_count(),
               date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"))
    return out


def defaults(runs):
    """{optimizer name: its configuration as the benchmark builds it at its
    class's defaults (the grid is centred on that learning rate)}, JSON-ready."""
    out = {}
    for name in dict.fromkeys(r["optimizer"] for r in runs):
        config = bench_optimizers.AVAILABLE[name].make().get_config()
        out[name] = json.loads(json.dumps({k: v for k, v in config.items() if k != "name"}, default=str))
    return out


def stale_defaults(recorded):
    """The differences between recorded `defaults()` ({name: config}) and the
    current classes': ["name.key: recorded -> now", ...] (empty when current).
    An optimizer the benchmark no longer has counts as a difference."""
    out = []
    for name, config in recorded.items():
        if name not in bench_optimizers.AVAILABLE:
            out.append(f"{name}: no longer a benchmark optimizer")
            continue
        now = defaults([{"optimizer": name}])[name]
        for key in sorted(set(config) | set(now)):
            a, b = config.get(key, "<absent>"), now.get(key, "<absent>")
            same = (math.isclose(a, b, rel_tol=1e-6) if all(isinstance(v, float) for v in (a, b)) else a == b)
            if not same:
                out.append(f"{name}.{key}: {a!r} -> {b!r}")
    return out


def defaults_section(table):
    rows = [[bench_optimizers.label(n), "`" + ", ".join(f"{k}={v}" for k, v in sorted(c.items())) + "`"]
            for n, c in table.items()]
    return ("## Optimizer defaults of this run\n\nEach optimizer as the benchmark built it (its class's defaults and "
            "the benchmark's fixed settings; the tuned grid is centred on this learning rate). `defaults.json` holds "
            "the same; a test fails when a class's defaults no longer match a committed results directory.\n\n"
            + _table(["Optimizer", "Configuration"], rows))


def header(runs_by_protocol, command):
    runs = next(iter(runs_by_protocol.values()))
    seeds = len({r["seed"] for r in runs})
    made = ", ".join(f"{k} {v}" for k, v in versions().items())
    lines = [f"# optzoo-bench results ({runs[0]['backend']} backend)",
             f"\nMade by `{command}` with {made}; {', '.join(runs_by_protocol)} protocol(s), {seeds} random seed(s), "
             f"mean ± std over random seeds. Losses and accuracies name their split: train, validation "
             f"(carved out of the training data, {int(100 * bench_tasks.VALIDATION_FRACTION)} %), test "
             f"(never used to choose anything). Accuracies in %.\n"]
    lines += [f"- {name}: {title}" for name, title in PAPERS.items()]
    return "\n".join(lines)


def write_markdown(runs, grid_rows, path, command):
    by_protocol = {p: [r for r in runs if r["protocol"] == p] for p in dict.fromkeys(r["protocol"] for r in runs)}
    parts = [header(by_protocol, command)]
    parts += [protocol_section(pr, [g for g in grid_rows if g.get("protocol") == p], p) for p, pr in by_protocol.items()]
    parts.append(verdict_section(by_protocol))
    parts.append(defaults_section(defaults(runs)))
    with open(path, "w") as f:
        f.write("\n\n".join(parts) + "\n")


def write_runs(runs, grid_rows, directory):
    """Every run's numbers and curves, and the grid (curves.json), written
    first, so that the tables and plots can be made again from them."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "curves.json"), "w") as f:
        json.dump({"runs": runs, "grid": grid_rows}, f)


def write_all(runs, grid_rows, directory, command):
    from keras_optzoo.bench import plots

    write_runs(runs, grid_rows, directory)
    with open(os.path.join(directory, "defaults.json"), "w") as f:
        json.dump({"versions": versions(), "optimizers": defaults(runs)}, f, indent=1, sort_keys=True)
    _write_csv(runs, CSV_COLUMNS, os.path.join(directory, "results.csv"))
    if grid_rows:
        _write_csv(grid_rows, ["protocol"] + GRID_COLUMNS, os.path.join(directory, "grid.csv"))
    write_markdown(runs, grid_rows, os.path.join(directory, "results.md"), command)
    plots.write_plots(runs, directory)
