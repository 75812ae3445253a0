"""What the tables report, computed from the runs' curves: final values,
paper 000's epochs to converge, the target validation loss and the
steps and seconds to reach it (AlgoPerf's time-to-result), and means +- std
over random seeds."""

import math
import types
from collections import defaultdict

import numpy as np

from keras_optzoo.bench.train import final_value, steady_step_seconds
from keras_optzoo.callbacks import AdaptiveStopping


def epochs_to_converge(train_loss, threshold):
    """The epoch (1-based) at which AdaptiveStopping's rule (monitor the
    training loss, relative improvement below `threshold`, at least 2 epochs)
    fires on this curve, or None if it never does. The callback itself reads
    the curve, so the rule is the one `AdaptiveStopping` applies in training."""
    stopper = AdaptiveStopping(monitor="loss", threshold=threshold, min_epochs=2)
    stopper.set_model(types.SimpleNamespace(stop_training=False))  # only its stop flag is used
    stopper.on_train_begin()
    for epoch, value in enumerate(train_loss):
        stopper.on_epoch_begin(epoch)
        stopper.on_epoch_end(epoch, {"loss": value})
        if stopper.converged_epoch is not None:
            return stopper.converged_epoch
    return None


def best_value(curve):
    finite = [v for v in curve if math.isfinite(v)]
    return min(finite) if finite else math.inf


def time_to_target(validation_loss, target, steps_per_epoch, seconds_per_step):
    """(epochs, steps, seconds) until the validation loss, measured at the end
    of each epoch, is first <= target; None when it never is. Seconds are
    those steps at the run's steady time per training step (compilation and
    the validation passes left out)."""
    for epoch, value in enumerate(validation_loss, start=1):
        if value <= target:
            return epoch, epoch * steps_per_epoch, epoch * steps_per_epoch * seconds_per_step
    return None


def default_target(runs, first_order):
    """The median, over the first-order optimizers, of their best validation
    loss (each optimizer's mean over seeds of its lowest validation loss)."""
    best = defaultdict(list)
    for run in runs:
        if run["optimizer"] in first_order and run["regularization"] == "none":
            best[run["optimizer"]].append(best_value(run["validation_loss"]))
    if not best:
        return None
    return float(np.median([np.mean(v) for v in best.values()]))


def targets(runs, first_order, given=None):
    """{task: target validation loss}: `given` ({task: value}, or a number for
    every task) where set, else `default_target`."""
    out = {}
    for task in dict.fromkeys(r["task"] for r in runs):
        fixed = given if isinstance(given, (int, float)) else (given or {}).get(task)
        out[task] = fixed if fixed is not None else default_target([r for r in runs if r["task"] == task], first_order)
    return out


def _final(run, key):
    """The last value of a curve the run has (a task without accuracy has none: None)."""
    return final_value(run[key]) if run.get(key) else None


def annotate(runs, task_targets, threshold):
    """Adds the reported values to every run (in place) and returns the runs."""
    for run in runs:
        step = steady_step_seconds(run)
        target = task_targets.get(run["task"])
        hit = None if target is None else time_to_target(
            run["validation_loss"], target, run["steps_per_epoch"], step)
        run.update(
            epochs_run=len(run["train_loss"]),
            final_train_loss=final_value(run["train_loss"]),
            final_validation_loss=final_value(run["validation_loss"]),
            best_validation_loss=best_value(run["validation_loss"]),
            final_train_accuracy_pct=_final(run, "train_accuracy_pct"),
            final_validation_accuracy_pct=_final(run, "validation_accuracy_pct"),
            epochs_to_converge=epochs_to_converge(run["train_loss"], threshold),
            target_validation_loss=target,
            epochs_to_target=hit[0] if hit else None,
            steps_to_target=hit[1] if hit else None,
            seconds_to_target=hit[2] if hit else None,
            step_time_s=step,
            time_per_epoch_s=step * run["steps_per_epoch"],
            total_time_s=float(sum(run["epoch_seconds"])),
        )
    return runs


class Stat:
    """Mean and std over random seeds of one metric. Runs without a value (a
    target not reached, a rule that did not fire) count in `missing`; a
    non-finite value marks the metric `diverged`."""

    def __init__(self, values):
        self.n = len(values)
        present = [float(v) for v in values if v is not None]
        self.missing = self.n - len(present)
        self.diverged = any(not math.isfinite(v) for v in present)
        ok = present and not self.diverged
        self.mean = float(np.mean(present)) if ok else None
        self.std = float(np.std(present)) if ok else None
        self.count = len(present)

    def value(self, higher_is_better=False):
        """The mean for comparisons: the worst possible value when any run
        diverged or lacks a value."""
        if self.diverged or self.missing or self.mean is None:
            return -math.inf if higher_is_better else math.inf
        return self.mean

    def format(self, fmt="{:.4f}", none="-"):
        if self.diverged:
            return "diverged"
        if self.mean is None:
            return none
        text = fmt.format(self.mean) if self.count == 1 else f"{fmt.format(self.mean)} ± {fmt.format(self.std)}"
        return f"{text} ({self.missing} of {self.n}: {none})" if self.missing else text


def stat(runs, key):
    return Stat([r.get(key) for r in runs])


def groups(runs, *keys):
    out = defaultdict(list)
    for run in runs:
        out[tuple(run[k] for k in keys)].append(run)
    return out
