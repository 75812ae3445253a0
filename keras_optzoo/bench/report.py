"""Writes results.csv, results.md (tables shaped like seed 000's Tables 1-3 and
seed 001's accuracy comparison) and matplotlib plots."""

import csv
import json
import os
from collections import defaultdict

import numpy as np

from keras_optzoo.bench.run import NAMED

CSV_COLUMNS = [
    "task", "model", "optimizer", "regularization", "seed", "backend", "learning_rate",
    "batch_size", "epochs", "epochs_run", "epochs_to_converge", "final_train_loss",
    "final_val_loss", "test_accuracy", "test_auc", "time_per_epoch_s", "total_time_s",
]


def _groups(results, *keys):
    groups = defaultdict(list)
    for row in results:
        groups[tuple(row[k] for k in keys)].append(row)
    return groups


def _stat(rows, key, fmt="{:.4f}"):
    values = [r[key] for r in rows if r[key] is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(np.mean(values))} ± {fmt.format(np.std(values))}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_csv(results, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in results:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in CSV_COLUMNS})


def write_markdown(results, path):
    backend = results[0]["backend"]
    seeds = len({r["seed"] for r in results})
    out = [f"# optzoo-bench results ({backend} backend, {seeds} seed(s); mean ± std over seeds)"]
    for task in sorted({r["task"] for r in results}):
        rows = [r for r in results if r["task"] == task and r["regularization"] == "none"] or [
            r for r in results if r["task"] == task
        ]
        by_opt = _groups(rows, "optimizer")
        out.append(f"\n## {task}: convergence (seed 000, Table 1)\n")
        out.append(_table(
            ["Optimizer", "Learning rate", "Epochs run", "Epochs to converge", "Final training loss", "Final validation loss"],
            [[NAMED[o][1], g[0]["learning_rate"], _stat(g, "epochs_run", "{:.0f}"),
              _stat(g, "epochs_to_converge", "{:.1f}"), _stat(g, "final_train_loss"), _stat(g, "final_val_loss")]
             for (o,), g in by_opt.items()],
        ))
        out.append(f"\n## {task}: time (seed 000, Table 3)\n")
        out.append(_table(
            ["Optimizer", "Time per epoch (s)", "Total time (s)"],
            [[NAMED[o][1], _stat(g, "time_per_epoch_s", "{:.3f}"), _stat(g, "total_time_s", "{:.2f}")]
             for (o,), g in by_opt.items()],
        ))
    regs = sorted({r["regularization"] for r in results if r["task"] == "mnist"})
    if regs:
        out.append("\n## mnist: regularization (seed 000, Table 2; strength 0.001 for L1/L2, dropout 0.5)\n")
        out.append(_table(
            ["Regularization", "Optimizer", "Training loss", "Validation loss", "Test accuracy (%)"],
            [[reg, NAMED[o][1], _stat(g, "final_train_loss"), _stat(g, "final_val_loss"),
              _stat([dict(r, test_accuracy=100 * r["test_accuracy"]) for r in g], "test_accuracy", "{:.2f}")]
             for (reg, o), g in _groups([r for r in results if r["task"] == "mnist"], "regularization", "optimizer").items()],
        ))
    out.append("\n## Test accuracy by optimizer (seed 001, Figs. 2 and 4)\n")
    tasks = sorted({r["task"] for r in results})
    header = ["Optimizer"] + [f"{t} accuracy" for t in tasks] + (["karate AUC"] if "karate" in tasks else [])
    table = []
    for name in NAMED:
        cells, any_row = [NAMED[name][1]], False
        for t in tasks:
            g = [r for r in results if r["task"] == t and r["optimizer"] == name and r["regularization"] == "none"]
            any_row |= bool(g)
            cells.append(_stat(g, "test_accuracy") if g else "-")
        if "karate" in tasks:
            g = [r for r in results if r["task"] == "karate" and r["optimizer"] == name]
            cells.append(_stat(g, "test_auc") if g else "-")
        if any_row:
            table.append(cells)
    out.append(_table(header, table))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def write_plots(results, directory):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backend = results[0]["backend"]
    for task in sorted({r["task"] for r in results}):
        rows = [r for r in results if r["task"] == task and r["regularization"] == "none"] or [
            r for r in results if r["task"] == task
        ]
        by_opt = _groups(rows, "optimizer")
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for (name,), g in by_opt.items():
            for ax, key in zip(axes, ("loss_curve", "val_loss_curve")):
                length = min(len(r[key]) for r in g)
                curve = np.mean([r[key][:length] for r in g], axis=0)
                ax.plot(np.arange(1, length + 1), curve, label=NAMED[name][1])
        for ax, title in zip(axes, ("training loss", "validation loss")):
            ax.set(xlabel="epoch", ylabel="loss", title=f"{task}: {title} ({backend})", yscale="log")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(directory, f"{task}_loss_curves.png"), dpi=110)
        plt.close(fig)

        for key, label, fname in (
            ("test_accuracy", "test accuracy", "test_accuracy"),
            ("time_per_epoch_s", "time per epoch (s)", "time_per_epoch"),
        ):
            fig, ax = plt.subplots(figsize=(8, 3.6))
            names = list(by_opt)
            means = [np.mean([r[key] for r in by_opt[n]]) for n in names]
            stds = [np.std([r[key] for r in by_opt[n]]) for n in names]
            ax.bar([NAMED[n][1] for (n,) in names], means, yerr=stds, color="tab:blue")
            ax.set(ylabel=label, title=f"{task}: {label} ({backend})")
            ax.tick_params(axis="x", rotation=35, labelsize=8)
            fig.tight_layout()
            fig.savefig(os.path.join(directory, f"{task}_{fname}.png"), dpi=110)
            plt.close(fig)


def write_all(results, directory):
    os.makedirs(directory, exist_ok=True)
    write_csv(results, os.path.join(directory, "results.csv"))
    write_markdown(results, os.path.join(directory, "results.md"))
    write_plots(results, directory)
    with open(os.path.join(directory, "curves.json"), "w") as f:
        json.dump([{k: r[k] for k in ("task", "optimizer", "regularization", "seed", "loss_curve",
                                       "val_loss_curve")} for r in results], f)
