"""`optzoo-bench` / `python -m keras_optzoo.bench`: every optimizer on the
seeds' experiments, side by side, with tables and plots.

Runs tasks x regularizations x optimizers x seeds, one `model.fit` each, and
writes `results.csv`, `results.md` and PNG plots into `--out`.
"""

import argparse
import os
import sys

BACKENDS = ("tensorflow", "jax", "torch")
TASKS = ("mnist", "karate")
OPTIMIZERS = ("gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "amsgrad", "adamw",
              "newton", "newton_cg", "hybrid", "adahessian", "sophiah")
REGULARIZATIONS = ("none", "l1", "l2", "dropout")
# Seed 001's settings: lr 0.01 for every optimizer, batch 64, 10 epochs (MNIST).
DEFAULTS = {"mnist": {"epochs": 10, "batch_size": 64}, "karate": {"epochs": 100, "batch_size": 16}}
QUICK = {"mnist": {"epochs": 2, "train": 1000, "test": 500}, "karate": {"epochs": 5}}
# --quick without --optimizers: one optimizer per family (GD, mini-batch SGD,
# momentum, the Adam family, second order); all 14 take 70-120 s on 2 cores
# with TensorFlow/JAX, mostly compiling 28 train steps.
QUICK_OPTIMIZERS = ["gd", "sgd", "momentum", "adam", "hybrid"]


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer; received {text!r}")
        if value < 1:
            raise argparse.ArgumentTypeError(f"{name} must be a positive integer; received {text!r}")
        return value

    return parse


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"--lr must be a finite number > 0; received {text!r}")
    return value


def _choices(option, allowed):
    def parse(text):
        names = [n.strip().lower() for n in text.split(",") if n.strip()]
        if names == ["all"]:
            return list(allowed)
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(
                f"{option}: unknown {', '.join(bad) or 'empty list'}; valid values: "
                f"{', '.join(allowed)} (comma-separated) or all"
            )
        return names

    return parse


def build_parser():
    p = argparse.ArgumentParser(
        prog="optzoo-bench",
        description="Compare keras_optzoo optimizers on the seeds' MNIST and Karate experiments.",
    )
    p.add_argument("--task", choices=("mnist", "karate", "all"), default="all")
    p.add_argument("--optimizers", type=_choices("--optimizers", OPTIMIZERS), default=None,
                   help="comma-separated; gd = full-batch SGD, sgd = mini-batch SGD; newton (diagonal), "
                        "newton_cg, hybrid, adahessian, sophiah are second order (default: all; with "
                        "--quick: gd,sgd,momentum,adam,hybrid)")
    p.add_argument("--epochs", type=_positive_int("--epochs"), help="default: mnist 10, karate 100")
    p.add_argument("--batch-size", type=_positive_int("--batch-size"), help="default: mnist 64, karate 16")
    p.add_argument("--lr", type=_positive_float, default=0.01, help="learning rate for every optimizer (0.01)")
    p.add_argument("--seeds", type=_positive_int("--seeds"), default=1, help="repeat with seeds 0..N-1")
    p.add_argument("--adaptive-stopping", action="store_true",
                   help="stop each run with AdaptiveStopping and report epochs to converge")
    p.add_argument("--stop-threshold", type=float, default=1e-3,
                   help="relative loss improvement below which AdaptiveStopping stops (1e-3)")
    p.add_argument("--regularization", type=_choices("--regularization", REGULARIZATIONS), default=["none"],
                   help="MNIST only, comma-separated: none,l1,l2,dropout")
    p.add_argument("--karate-model", choices=("gcn", "conv1d"), default="gcn")
    p.add_argument("--data", default="auto",
                   help="MNIST source: auto (download, else the embedded 10k files), keras, embedded, or a directory of IDX files")
    p.add_argument("--out", default="optzoo-results", help="output directory (created)")
    p.add_argument("--quick", action="store_true",
                   help="tiny budget (tests, smoke runs): 1,000 MNIST images, 2 MNIST / 5 Karate epochs")
    p.add_argument("--backend", choices=BACKENDS, help="Keras backend (default: KERAS_BACKEND)")
    return p


def _check_out(parser, out):
    path = os.path.abspath(out)
    probe = path
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe) or not os.access(probe, os.W_OK):
        parser.error(f"--out: {out!r} is not a writable directory")
    if os.path.exists(path) and not os.path.isdir(path):
        parser.error(f"--out: {out!r} exists and is not a directory")


# What the benchmark imports beyond the base install, and for what. All of it
# is in the `bench` extra.
NEEDS = {"matplotlib": "the PNG plots", "networkx": "the Karate Club graph, --task karate or all"}


def _missing_packages(task):
    """The packages of NEEDS this run would import and that are not installed,
    checked before any training so that a run never fails at its end."""
    needed = ["matplotlib"] + (["networkx"] if task in ("karate", "all") else [])
    missing = []
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.optimizers is None:
        args.optimizers = list(QUICK_OPTIMIZERS if args.quick else OPTIMIZERS)
    _check_out(parser, args.out)
    if args.data not in ("auto", "keras", "embedded") and not os.path.isdir(args.data):
        parser.error(f"--data: {args.data!r} is not auto, keras, embedded or a directory")
    if not args.stop_threshold >= 0:
        parser.error(f"--stop-threshold must be >= 0; received {args.stop_threshold}")
    missing = _missing_packages(args.task)
    if missing:
        parser.error(
            "missing package(s) " + ", ".join(f"{m} (for {NEEDS[m]})" for m in missing)
            + ': add the bench extra, pip install "keras-optzoo[bench]" (from a checkout: '
            'pip install -e ".[bench]"), or pip install ' + " ".join(missing)
        )
    if args.backend and args.backend != os.environ.get("KERAS_BACKEND"):
        # Keras fixes its backend at import: start again with the one asked for.
        if "keras" in sys.modules:
            env = dict(os.environ, KERAS_BACKEND=args.backend)
            cmd = [sys.executable, "-m", "keras_optzoo.bench", *argv]
            os.execve(sys.executable, cmd, env)
        os.environ["KERAS_BACKEND"] = args.backend
    from keras_optzoo.bench import run, report

    results = run.run_all(args)
    report.write_all(results, args.out)
    print(f"wrote {len(results)} runs to {os.path.abspath(args.out)}: results.csv, results.md, *.png")
    return 0
