"""The benchmark's plots, per protocol and task: loss curves (training and
validation), test accuracy, and time to the target validation loss. Every
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


def _title(task, protocol, what, backend):
    return f"{bench_tasks.TASKS[task].title}\n{what} ({protocol} protocol, {backend}, mean over random seeds)"


def _save(fig, path):
    fig.savefig(path, dpi=100, bbox_inches="tight")


def loss_curves(plt, runs, task, protocol, path):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for name, group in _by_optimizer(runs):
        for ax, key in zip(axes, ("train_loss", "validation_loss")):
            curve = _mean_curve(group, key)
            if curve is not None:
                ax.plot(np.arange(1, len(curve) + 1), curve, **bench_optimizers.style(name))
    target = runs[0].get("target_validation_loss")
    if target:
        axes[1].axhline(target, color="grey", linewidth=0.8, label="target")
    for ax, split in zip(axes, ("training", "validation")):
        ax.set(xlabel="epoch", ylabel=f"{split} loss (log scale)", yscale="log", title=f"{split} loss")
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(_title(task, protocol, "loss per epoch", runs[0]["backend"]), fontsize=10, y=1.04)
    axes[1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
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
    ax.set_title(_title(task, protocol, what, runs[0]["backend"]), fontsize=10)
    _save(fig, path)


def write_plots(runs, directory):
    plt = _pyplot()
    for protocol in dict.fromkeys(r["protocol"] for r in runs):
        for task in bench_tasks.ORDER:
            task_runs = [r for r in runs if r["protocol"] == protocol and r["task"] == task
                         and r["regularization"] == "none"]
            if not task_runs:
                continue
            stem = os.path.join(directory, f"{protocol}_{task}_")
            loss_curves(plt, task_runs, task, protocol, stem + "loss_curves.png")
            _bars(plt, task_runs, "test_accuracy_pct", "test accuracy (%)", task, protocol, "test accuracy",
                  stem + "test_accuracy.png", "-")
            target = task_runs[0].get("target_validation_loss")
            _bars(plt, task_runs, "seconds_to_target", "seconds to the target validation loss "
                  "(steady time per epoch, compilation left out)", task, protocol,
                  f"time to validation loss {target:.4f}" if target else "time to target",
                  stem + "time_to_target.png", "not reached")
            plt.close("all")
