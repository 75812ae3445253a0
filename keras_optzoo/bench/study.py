"""`keras_optzoo.bench.compare`: the benchmark's protocol on a user's own model.

Every argument is checked, and the model built, compiled and run on one batch
of each split, before any training, so that a mistake costs seconds, not a
finished grid search.
"""

import math
import os
import time
import types
from typing import NamedTuple

import keras
from keras_optzoo.bench import analysis, report, run
from keras_optzoo.bench import optimizers as bench_optimizers
from keras_optzoo.bench.tasks import Split, Task
from keras_optzoo import with_curvature
from keras_optzoo.bench.train import head, is_dataset, num_samples

PROTOCOLS = ("tuned", "fixed")
DATA_KINDS = "an (x, y) tuple of arrays (x and y may be lists or dicts of arrays), a tf.data.Dataset, a " \
             "keras.utils.PyDataset or a torch DataLoader"


class Best(NamedTuple):
    """The winner by mean final validation loss over seeds, and its margin over
    the runner-up in standard deviations (the larger of the two; inf when both
    are 0, None without a runner-up). A margin above 1 is a win by the
    benchmark's rule; below 1, a tie."""

    optimizer: str
    learning_rate: float
    validation_loss: float  # mean over seeds
    validation_loss_std: float
    runner_up: object  # name, or None
    runner_up_validation_loss: object
    margin_std: object


class Comparison:
    """What `compare` returns.

    `runs`: one dict per final run (task x optimizer x seed), the columns of
    results.csv plus the per-epoch curves (`train_loss`, `validation_loss`, ...,
    `epoch_seconds`, `train_seconds`, `steps`). `grid`: the learning-rate
    search (grid.csv's rows)."""

    def __init__(self, runs, grid, command):
        self.runs, self.grid, self.command = runs, grid, command

    def _groups(self):
        groups = analysis.groups(self.runs, "optimizer")
        return [(name, groups[(name,)]) for name in bench_optimizers.NAMES if (name,) in groups]

    def table(self):
        """A Markdown table: per optimizer its learning rate, final and best
        validation loss, steps and seconds to the target, and the step time."""
        tests = report._test_columns(self.runs)
        header = ["Optimizer", "Learning rate", "Final validation loss", "Best validation loss",
                  "Steps to target", "Seconds to target", "Step time (ms)"] + [h for h, _, _ in tests]
        rows = []
        for name, group in self._groups():
            s = lambda key, fmt="{:.4f}", none="-": analysis.stat(group, key).format(fmt, none)
            rows.append([bench_optimizers.label(name), report.lr_cell(group[0]), s("final_validation_loss"),
                         s("best_validation_loss"), s("steps_to_target", "{:.0f}", "not reached"),
                         s("seconds_to_target", "{:.3g}", "not reached"),
                         analysis.Stat([1e3 * r["step_time_s"] for r in group]).format("{:.2f}")]
                        + [s(key, fmt) for _, key, fmt in tests])
        target = self.runs[0].get("target_validation_loss")
        note = f"Target validation loss: {target:.4g}.\n\n" if target is not None else ""
        return note + report._table(header, rows)

    def best(self):
        """The `Best` optimizer by mean final validation loss (a diverged run counts as the worst)."""
        stats = {name: analysis.stat(group, "final_validation_loss") for name, group in self._groups()}
        ranked = sorted(stats, key=lambda n: stats[n].value())
        first = ranked[0]
        lr = next(r["learning_rate"] for r in self.runs if r["optimizer"] == first)
        a = stats[first]
        if len(ranked) == 1:
            return Best(first, lr, a.value(), a.std or 0.0, None, None, None)
        b = stats[ranked[1]]
        gap, noise = b.value() - a.value(), max(a.std or 0.0, b.std or 0.0)
        margin = gap / noise if noise > 0 else (math.inf if gap > 0 else 0.0)
        return Best(first, lr, a.value(), a.std or 0.0, ranked[1], b.value(), margin)

    def save(self, directory):
        """results.csv, grid.csv, results.md (tables and verdicts), curves.json and the plots."""
        report.write_all(self.runs, self.grid, directory, self.command)
        return directory

    def __repr__(self):
        b = self.best()
        return f"<Comparison of {len(self._groups())} optimizer(s), {len(self.runs)} runs; best {b.optimizer}>"


def _check_positive_int(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"compare: {name} must be a positive integer{' or None' if allow_none else ''}; "
                         f"received {value!r}")
    return value


def _optimizer_names(optimizers, dataset):
    if isinstance(optimizers, str):
        optimizers = list(bench_optimizers.NAMES) if optimizers == "all" else [optimizers]
    names = [str(n).strip().lower() for n in optimizers]
    bad = [n for n in names if n not in bench_optimizers.AVAILABLE]
    if bad or not names:
        raise ValueError(f"compare: optimizers: unknown {', '.join(map(repr, bad)) or 'empty list'}; valid values: "
                         f"\"all\" or a list of {', '.join(bench_optimizers.NAMES)}")
    full_batch = [n for n in names if bench_optimizers.AVAILABLE[n].full_batch]
    if dataset and full_batch:
        if optimizers != list(bench_optimizers.NAMES):
            raise ValueError(f"compare: optimizers: {', '.join(full_batch)} trains on the whole training set in "
                             f"one batch, which a dataset that batches itself cannot give; pass (x, y) arrays or "
                             f"leave {', '.join(full_batch)} out")
        names = [n for n in names if n not in full_batch]
    return list(dict.fromkeys(names))


def _data(name, data, batch_size):
    """(x, y) of a split: arrays, or (dataset, None)."""
    if is_dataset(data):
        if batch_size is not None:
            raise ValueError(f"compare: batch_size must be None when {name} is a dataset (it batches itself); "
                             f"received batch_size={batch_size}")
        return data, None
    if isinstance(data, (tuple, list)) and len(data) == 3:
        raise ValueError(f"compare: {name} has 3 parts; (x, y, sample_weight) is not taken as arrays: pass a "
                         f"dataset that yields (x, y, sample_weight) batches (tf.data, PyDataset or DataLoader)")
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"compare: {name} must be {DATA_KINDS}; received {type(data).__name__}")
    x, y = data
    lengths = {}
    for part, value in (("x", x), ("y", y)):
        for leaf in keras.tree.flatten(value):
            if not hasattr(leaf, "shape") or not len(getattr(leaf, "shape", ())):
                raise ValueError(f"compare: {name}'s {part} must hold arrays with a sample axis; received "
                                 f"{type(leaf).__name__}")
            lengths.setdefault(int(leaf.shape[0]), []).append(part)
    if len(lengths) != 1:
        raise ValueError(f"compare: {name}'s arrays disagree on the number of samples: " + ", ".join(
            f"{'/'.join(sorted(set(parts)))} {n}" for n, parts in lengths.items()))
    return x, y


def _preflight(task, split, batch_size, second_order):
    """Builds, compiles and evaluates the user's model on one batch of each
    split; with second-order optimizers among `second_order`, wraps it with
    `with_curvature` too (a model that overrides `train_step` is refused)."""
    keras.utils.set_random_seed(0)
    try:
        model = task.build(split, "none")
    except Exception as error:
        raise ValueError(f"compare: build_model() raised {type(error).__name__}: {error}") from error
    if not isinstance(model, keras.Model):
        raise ValueError(f"compare: build_model() must return a keras.Model; it returned {type(model).__name__}")
    if task.build(split, "none") is model:
        raise ValueError("compare: build_model() returned the same model twice; it must build a new, uncompiled "
                         "keras.Model on each call (each run starts from fresh weights)")
    if second_order:
        try:
            with_curvature(model)
        except TypeError as error:
            raise ValueError(f"compare: optimizers {', '.join(second_order)} train through with_curvature, and "
                             f"{error} Or leave them out of `optimizers`.") from error
    try:
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss=task.loss, metrics=task.metrics(),
                      **task.compile_kwargs)
        for name, x, y in (("train", split.x_train, split.y_train), ("validation", split.x_val, split.y_val),
                           ("test", split.x_test, split.y_test)):
            if x is None:
                continue
            if y is None:
                model.evaluate(x, steps=1, verbose=0)
            else:
                n = min(num_samples(x), batch_size or 32)
                model.evaluate(head(x, n), head(y, n), batch_size=n, verbose=0)
    except Exception as error:  # a clear message before any training, with Keras's own reason
        raise ValueError(f"compare: the model from build_model() cannot be compiled with loss={task.loss!r}"
                         f" or does not accept the {name} data: {type(error).__name__}: {error}") from error


def _check_out(out):
    from keras_optzoo.bench import writable

    if out is not None and not writable(os.fspath(out)):
        raise ValueError(f"compare: out: {out!r} is not a writable directory")


def _fresh_metrics(metrics):
    """A copy of `metrics` with new Metric objects (each compiled model keeps its own state)."""
    if isinstance(metrics, keras.metrics.Metric):
        return metrics.__class__.from_config(metrics.get_config())
    if isinstance(metrics, dict):
        return {k: _fresh_metrics(v) for k, v in metrics.items()}
    if isinstance(metrics, (list, tuple)):
        return [_fresh_metrics(m) for m in metrics]
    return metrics


def compare(build_model, train, validation, *, loss, metrics=(), optimizers="all", protocol="tuned", epochs,
            batch_size=None, seeds=3, target=None, out=None, test=None, loss_weights=None, learning_rate=None,
            name="my-task", verbose=1):
    """Runs optzoo-bench's protocol on your model and returns a `Comparison`.

    Args:
        build_model: a function returning a new, uncompiled `keras.Model` on
            each call (called after `keras.utils.set_random_seed(seed)`).
        train: `(x, y)` arrays (x and y may be lists or dicts of arrays), or
            a `tf.data.Dataset`, `keras.utils.PyDataset` or torch `DataLoader`
            that yields batches.
        validation: the same kinds; learning rates are chosen by the final
            loss on it.
        loss: as for `model.compile` (a dict or list for several outputs).
        metrics: as for `model.compile`; Metric objects are copied for every model.
        loss_weights: as for `model.compile`.
        optimizers: "all" (every optimizer of the benchmark; full-batch "gd" is
            left out when `train` is a dataset) or a list of names ("adam",
            "soap", ...). Second-order ones are wrapped with `with_curvature`.
        protocol: "tuned" (each optimizer's learning rate from its grid, by
            successive halving on seed 0, the grid grown past an edge) or
            "fixed" (`learning_rate`, or each optimizer's default).
        epochs: the budget, in epochs.
        batch_size: None is 32 for arrays, and must be None for a dataset.
        seeds: random seeds 0..seeds-1 of the final runs (weights and shuffling).
        target: the target validation loss for time to target (default: the
            median over the first-order optimizers run of their best
            validation loss).
        out: a directory to write results.csv, grid.csv, results.md and plots to.
        learning_rate: the fixed protocol's learning rate (default: each
            optimizer's own default).
        test: an optional held-out split (same kinds as `train`), evaluated
            once per final run after the learning rate was chosen; never used
            for any choice.
        name: the task's name in tables and files.
        verbose: 1 prints one line per finished run, 0 nothing.
    """
    if not callable(build_model):
        raise ValueError(f"compare: build_model must be a function returning a new keras.Model; received "
                         f"{type(build_model).__name__}")
    if loss is None:
        raise ValueError("compare: loss is required (a name, a keras.losses.Loss, or a dict/list per output)")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "/\\"):
        raise ValueError(f"compare: name must be a non-empty string without / or \\ (it names the output "
                         f"files); received {name!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"compare: protocol must be one of {', '.join(PROTOCOLS)}; received {protocol!r}")
    epochs = _check_positive_int("epochs", epochs)
    seeds = _check_positive_int("seeds", seeds)
    batch_size = _check_positive_int("batch_size", batch_size, allow_none=True)
    for arg, value in (("target", target), ("learning_rate", learning_rate)):
        if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise ValueError(f"compare: {arg} must be a finite number > 0 or None; received {value!r}")
    if learning_rate is not None and protocol != "fixed":
        raise ValueError("compare: learning_rate is the fixed protocol's; pass protocol=\"fixed\" or leave it out")
    x_train, y_train = _data("train", train, batch_size)
    x_val, y_val = _data("validation", validation, batch_size)
    x_test, y_test = (None, None) if test is None else _data("test", test, batch_size)
    names = _optimizer_names(optimizers, y_train is None)
    _check_out(out)
    if y_train is not None and batch_size is None:
        batch_size = 32  # Keras's own default
    split = Split(x_train, y_train, x_val, y_val, x_test, y_test)
    fresh = list(metrics) if isinstance(metrics, tuple) else metrics
    task = Task(name, f"{name} (keras_optzoo.bench.compare)", "user", epochs, batch_size or 32, 1.0,
                lambda split, regularization: build_model(), loss, lambda: _fresh_metrics(fresh), "",
                {} if loss_weights is None else dict(loss_weights=loss_weights))
    _preflight(task, split, batch_size, [n for n in names if bench_optimizers.AVAILABLE[n].second_order])
    args = types.SimpleNamespace(optimizers=names, protocol=[protocol], seeds=seeds, epochs=epochs,
                                 batch_size=batch_size, lr=None, quick=False, target=target, stop_threshold=1e-3,
                                 regularization=["none"], regularization_optimizers=[])
    fixed = ({n: learning_rate or bench_optimizers.AVAILABLE[n].default_learning_rate() for n in names}
             if protocol == "fixed" else None)
    progress = run.Progress(run._plan([task], args), verbose=bool(verbose))
    start = time.perf_counter()
    runs, grid = run.run_protocol(protocol, [task], {name: split}, args, progress, {}, learning_rates=fixed)
    if verbose:
        print(f"compare: {len(runs)} runs of {len(names)} optimizer(s) on the {keras.backend.backend()} backend "
              f"in {time.perf_counter() - start:.0f} s", flush=True)
    result = Comparison(runs, grid, f"keras_optzoo.bench.compare(..., protocol={protocol!r}, epochs={epochs}, "
                                    f"seeds={seeds})")
    if out is not None:
        result.save(out)
    return result
