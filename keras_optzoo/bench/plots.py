"""The benchmark's plots, per protocol and task: loss curves (training and
validation loss against training steps, validation loss against seconds of
training at the run's steady step time), test accuracy, and time to the
target validation loss. Every
optimizer keeps its colour, marker and line style (`optimizers.style`) in
every plot; legends sit outside the axes; accuracy is in %."""

import math
import os

import numpy as np

from keras_optzoo.bench import analysis
from keras_optzoo.bench import optimizers as bench_optimizers
from keras_optzoo.bench import tasks as bench_tasks


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_curve(group, key):
    curves = [[v if math.isfinite(v) else np.nan for v in r[key]] for r in group if r[key]]
    if not curves:
        return None
    length = min(len(c) for c in curves)
    return np.nanmean([c[:length] for c in curves], axis=0) if length else None


def _by_optimizer(runs):
    groups = analysis.groups(runs, "optimizer")
    return [(name, groups[(name,)]) for name in bench_optimizers.NAMES if (name,) in groups]


def _title(runs, task, protocol, what):
    return (f"{bench_tasks.title(task, runs)}\n{what} ({protocol} protocol, {runs[0]['backend']}, "
            f"mean over random seeds)")


def _save(fig, path):
    fig.savefig(path, dpi=100, bbox_inches="tight")


def loss_curves(plt, runs, task, protocol, path):
    """Training and validation loss at the end of each epoch against training
    steps, and validation loss against seconds (steps x the steady step time,
    the mean over seeds: what AlgoPerf's time to result counts)."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.2), sharey=True)
    for name, group in _by_optimizer(runs):
        steps = np.mean([r["steps_per_epoch"] for r in group])
        seconds = steps * np.mean([r["step_time_s"] for r in group])
        for ax, key, per_epoch in zip(axes, ("train_loss", "validation_loss", "validation_loss"),
                                      (steps, steps, seconds)):
            curve = _mean_curve(group, key)
            if curve is not None and math.isfinite(per_epoch):
                ax.plot(per_epoch * np.arange(1, len(curve) + 1), curve, **bench_optimizers.style(name))
    target = runs[0].get("target_validation_loss")
    if target:
        for ax in axes[1:]:
            ax.axhline(target, color="grey", linewidth=0.8, label="target")
    for ax, split, x in zip(axes, ("training", "validation", "validation"),
                            ("training steps", "training steps", "seconds of training")):
        ax.set(xlabel=x, ylabel=f"{split} loss (log scale)", yscale="log", title=f"{split} loss against {x}")
        ax.grid(alpha=0.3)
    fig.suptitle(_title(runs, task, protocol, "loss at the end of each epoch"), fontsize=10, y=1.04)
    axes[2].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    _save(fig, path)


# A bar's hatch for each family's line style (optimizers.LINESTYLES), so the
# bars tell the families apart in black and white as the lines do.
HATCHES = {"-": "", "--": "//", ":": "..", "-.": "xx"}


def _bars(plt, runs, key, xlabel, task, protocol, what, path, none_text):
    names = _by_optimizer(runs)
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.6))
    for i, (name, group) in enumerate(names):
        s = analysis.stat(group, key)
        style = bench_optimizers.style(name)
        if s.mean is None or s.missing == s.n:
            ax.text(0, i, f"  {none_text}", va="center", fontsize=8)
        else:
            ax.barh(i, s.mean, xerr=s.std, color=style["color"], edgecolor="black", linewidth=0.5,
                    hatch=HATCHES[style["linestyle"]])
            ax.text(s.mean, i, f"  {s.format('{:.3g}', none_text)}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [bench_optimizers.label(n) for n, _ in names], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel)
    ax.margins(x=0.25)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(_title(runs, task, protocol, what), fontsize=10)
    _save(fig, path)


def write_plots(runs, directory):
    plt = _pyplot()
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    for protocol in dict.fromkeys(r["protocol"] for r in runs):
        for task in tasks:
            task_runs = [r for r in runs if r["protocol"] == protocol and r["task"] == task
                         and r["regularization"] == "none"]
            if not task_runs:
                continue
            stem = os.path.join(directory, f"{protocol}_{task}_")
            loss_curves(plt, task_runs, task, protocol, stem + "loss_curves.png")
            if any(r.get("test_accuracy_pct") is not None for r in task_runs):
                _bars(plt, task_runs, "test_accuracy_pct", "test accuracy (%)", task, protocol, "test accuracy",
                      stem + "test_accuracy.png", "-")
            target = task_runs[0].get("target_validation_loss")
            _bars(plt, task_runs, "seconds_to_target", "seconds to the target validation loss "
                  "(steady time per training step, compilation and validation left out)", task, protocol,
                  f"time to validation loss {target:.4f}" if target else "time to target",
                  stem + "time_to_target.png", "not reached")
            plt.close("all")
