"""Runs the benchmark: tasks x optimizers under the chosen protocol, then paper
000 Table 2's regularizations on the MNIST MLP. Returns the final runs (one
per task x regularization x optimizer x seed) and the tuned protocol's grid."""

import math
import time

import keras
from keras_optzoo.bench import analysis
from keras_optzoo.bench import optimizers as bench_optimizers
from keras_optzoo.bench import protocol
from keras_optzoo.bench import tasks as bench_tasks
from keras_optzoo.bench.train import Trainer, num_samples

# --quick: a tiny budget for smoke tests.
QUICK = {"mnist_train": 1000, "mnist_test": 500, "text_windows": 400,
         "epochs": {"mnist-mlp": 2, "mnist-cnn": 1, "karate": 5, "shakespeare": 1}}


def _clock(seconds):
    return "?" if seconds is None else f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


class Progress:
    """One line per finished run, with the share of the planned work done and
    an ETA; each run counts by its expected cost (epochs x the task's and the
    optimizer's relative cost), not as one run."""

    def __init__(self, total, verbose=True):
        self.total, self.done, self.start, self.verbose = total, 0.0, time.perf_counter(), verbose

    def advance(self, cost):
        self.done += cost

    def eta(self):
        if not self.done:
            return None
        elapsed = time.perf_counter() - self.start
        return elapsed * max(self.total - self.done, 0.0) / self.done

    def report(self, text):
        if not self.verbose:
            return
        share = min(100.0, 100.0 * self.done / self.total) if self.total else 100.0
        elapsed = time.perf_counter() - self.start
        print(f"[{share:3.0f} %, {_clock(elapsed)} elapsed, ETA {_clock(self.eta())}] {text}", flush=True)


def load_mnist(args):
    from keras_optzoo.tasks import mnist

    if args.data == "embedded":
        data = mnist.load_embedded()
    elif args.data in ("auto", "keras"):
        data = mnist.load_data(source=args.data)
    else:
        data = mnist.load_idx(args.data)
    if args.quick:
        (x, y), (xt, yt) = data
        n, m = QUICK["mnist_train"], QUICK["mnist_test"]
        data = (x[:n], y[:n]), (xt[:m], yt[:m])
    return bench_tasks.mnist_splits(data)


def load_splits(tasks, args):
    """{task name: Split} of the MNIST and text tasks (Karate draws its split per seed)."""
    names = {t.name for t in tasks}
    splits = load_mnist(args) if names & {"mnist-mlp", "mnist-cnn"} else {}
    if "shakespeare" in names:
        splits["shakespeare"] = bench_tasks.text_split(QUICK["text_windows"] if args.quick else None)
    return splits


def _optimizers_for(task, args):
    """The optimizers of `task`: the suite's plan, else every one asked for."""
    return getattr(args, "plan", {}).get(task.name, args.optimizers)


def selected_tasks(args):
    chosen = [bench_tasks.karate_task(args.karate_model) if t == "karate" else bench_tasks.TASKS[t]
              for t in bench_tasks.ORDER if t in args.task]
    return chosen


def task_epochs(task, args):
    return args.epochs or (QUICK["epochs"][task.name] if args.quick else task.epochs)


def _splitter(task, splits):
    """seed -> Split: Karate draws a new edge split per seed; the others keep theirs."""
    if task.name == "karate":
        return bench_tasks.karate_split
    return lambda seed: splits[task.name]


def _record(task, spec, trainer, split, seed, lr, curves, args, regularization, protocol_name):
    batch_size, steps = trainer.batch_size_for(split), [n for n in curves["steps"] if n]
    record = dict(task=task.name, task_title=task.title, model=task.model, optimizer=spec.name,
                  regularization=regularization, protocol=protocol_name, seed=seed,
                  backend=keras.backend.backend(), learning_rate=lr, batch_size=batch_size,
                  epochs=task_epochs(task, args), train_size=num_samples(split.x_train),
                  # Counted in training (a dataset's length may be unknown); the last epoch may stop early on NaN.
                  steps_per_epoch=max(steps) if steps else 0, **curves)
    record.update(trainer.evaluate_test(split))
    return record


def _summary(record):
    auc = f", AUC {record['test_auc']:.3f}" if "test_auc" in record else ""
    accuracy = f", test accuracy {record['test_accuracy_pct']:.1f} %" if "test_accuracy_pct" in record else ""
    val = record["validation_loss"][-1] if record["validation_loss"] else math.nan
    return (f"{record['task']:<9} {record['regularization']:<7} "
            f"{bench_optimizers.label(record['optimizer']):<18} lr {record['learning_rate']:<8g} "
            f"random seed {record['seed']}: validation loss {val:.4f}{accuracy}{auc}")


def run_optimizer(task, spec, args, splits, progress, protocol_name, regularization="none", learning_rate=None,
                  trainers=None):
    """The final runs of one task x optimizer x regularization under
    `protocol_name` (and the grid rows when the learning rate is tuned here).
    `trainers` caches the compiled trainers across protocols."""
    split0 = splits(0)
    trainers = {} if trainers is None else trainers
    key = (task.name, spec.name, regularization)
    if key not in trainers:
        trainers[key] = Trainer(task, spec, split0, regularization, args.batch_size)
    trainer = trainers[key]
    epochs, cost = task_epochs(task, args), task.relative_cost * spec.cost
    records, grid_rows, seeds, at_edge = [], [], range(args.seeds), False
    if learning_rate is None and protocol_name == "tuned":
        learning_rate, curves, rows, snapshot = protocol.select_learning_rate(
            trainer, split0.without_test(), spec.grid(), epochs, progress, cost)
        grid_rows = [dict(protocol=protocol_name, task=task.name, optimizer=spec.name, **row) for row in rows]
        at_edge = any(row["at_edge"] for row in rows)
        trainer.restore(snapshot)
        records.append(_record(task, spec, trainer, split0, 0, learning_rate, curves[learning_rate], args,
                               regularization, protocol_name))
        progress.report(_summary(records[-1]))
        seeds = range(1, args.seeds)
    learning_rate = learning_rate or args.lr
    for seed in seeds:
        split = splits(seed)
        trainer.start(split, seed, learning_rate)
        curves = trainer.fit(split, seed, epochs)
        progress.advance(cost * epochs)
        records.append(_record(task, spec, trainer, split, seed, learning_rate, curves, args, regularization,
                               protocol_name))
        progress.report(_summary(records[-1]))
    for record in records:
        record["learning_rate_at_edge"] = at_edge
    return records, grid_rows


def _plan(tasks, args):
    """The planned cost of the whole run, for the ETA."""
    total = 0.0
    for tuned in (p == "tuned" for p in args.protocol):
        for task in tasks:
            epochs = task_epochs(task, args)
            for name in _optimizers_for(task, args):
                spec = bench_optimizers.AVAILABLE[name]
                grid = len(spec.grid()) if tuned else 1
                total += task.relative_cost * spec.cost * protocol.planned_cost(grid, epochs, args.seeds, tuned)
            if task.name == "mnist-mlp":
                extra = len([r for r in args.regularization if r != "none"])
                for name in _regularized(args):
                    total += task.relative_cost * bench_optimizers.AVAILABLE[name].cost * epochs * args.seeds * extra
    return total


def _regularized(args):
    mlp = getattr(args, "plan", {}).get("mnist-mlp", args.optimizers)
    return [n for n in args.regularization_optimizers if n in mlp]


def run_protocol(protocol_name, tasks, splits_by_task, args, progress, trainers, learning_rates=None):
    """The final runs and grid rows of one protocol, annotated with the reported
    values. `learning_rates` ({name: lr}) fixes an optimizer's rate (fixed protocol)."""
    records, grid_rows = [], []
    for task in tasks:
        splits = _splitter(task, splits_by_task)
        chosen = {}
        for name in _optimizers_for(task, args):
            new, rows = run_optimizer(task, bench_optimizers.AVAILABLE[name], args, splits, progress, protocol_name,
                                      learning_rate=(learning_rates or {}).get(name), trainers=trainers)
            records += new
            grid_rows += rows
            chosen[name] = new[0]["learning_rate"]
        if task.name != "mnist-mlp":
            continue
        for reg in (r for r in args.regularization if r != "none"):
            for name in _regularized(args):
                new, _ = run_optimizer(task, bench_optimizers.AVAILABLE[name], args, splits, progress,
                                       protocol_name, regularization=reg, learning_rate=chosen[name],
                                       trainers=trainers)
                records += new
    task_targets = analysis.targets(records, bench_optimizers.FIRST_ORDER, args.target)
    return analysis.annotate(records, task_targets, args.stop_threshold), grid_rows


def run_all(args):
    tasks = selected_tasks(args)
    splits = load_splits(tasks, args)
    progress = Progress(_plan(tasks, args))
    counts = ", ".join(f"{t.name} {len(_optimizers_for(t, args))}" for t in tasks)
    print(f"optzoo-bench: {' and '.join(args.protocol)} protocol, {len(tasks)} task(s) (optimizers: {counts}) x "
          f"{args.seeds} random seed(s) on the {keras.backend.backend()} backend", flush=True)
    records, grid_rows, trainers = [], [], {}
    for protocol_name in args.protocol:
        start = time.perf_counter()
        new, rows = run_protocol(protocol_name, tasks, splits, args, progress, trainers)
        records += new
        grid_rows += rows
        print(f"optzoo-bench: {protocol_name} protocol took {time.perf_counter() - start:.0f} s", flush=True)
    return records, grid_rows
