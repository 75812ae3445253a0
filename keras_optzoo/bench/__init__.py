"""`optzoo-bench` / `python -m keras_optzoo.bench`: which optimizer, on my task?

Trains every optimizer on three tasks (MNIST with paper 001's MLP and with a
small CNN, Karate Club link prediction) under a declared protocol, and writes
`results.csv`, `grid.csv`, `results.md` (tables, time to target, verdicts on
the papers' claims) and PNG plots into `--out`.
"""

import argparse
import os
import sys


def __getattr__(name):
    # `compare` imports Keras, which the CLI must not do before it chose the backend.
    if name in ("compare", "Comparison"):
        from keras_optzoo.bench import study

        return getattr(study, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

BACKENDS = ("tensorflow", "jax", "torch")
TASK_NAMES = ("mnist-mlp", "mnist-cnn", "karate", "shakespeare")
TASK_ALIASES = {"mnist": ["mnist-mlp", "mnist-cnn"], "all": list(TASK_NAMES)}
SUITES = ("default", "full")
# The default suite's optimizers per task, to keep the default run within
# 15 minutes on 2 CPU cores per backend (docs/guides/benchmark.md, "Budget").
# On the MLP and Karate, the optimizers the papers' claims compare (paper
# 000's Table 1 and Hybrid, paper 001's first-order and adaptive methods)
# and one of each newer family (Sophia-H, SOAP, Shampoo); left for --suite
# full: AdamW (Adam there: no weight decay to decouple), Newton, Newton-CG,
# AdaHessian, Sophia-G. On the 1,000-step CNN, Momentum and Adam against SOAP
# and Shampoo (the full suite's best there on JAX; Sophia-H reached the CNN's
# target on no backend); on the Transformer AdamW against SOAP and Sophia-H.
_PAPERS = ["gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "amsgrad", "hybrid", "sophiah",
           "soap", "shampoo"]
DEFAULT_SUITE = {"mnist-mlp": _PAPERS, "karate": _PAPERS, "mnist-cnn": ["momentum", "adam", "soap", "shampoo"],
                 "shakespeare": ["adamw", "soap", "sophiah"]}
PROTOCOLS = ("tuned", "fixed")
REGULARIZATIONS = ("none", "l1", "l2", "dropout")
DEFAULT_SEEDS = 3
# --quick: one optimizer of each kind (mini-batch SGD, adaptive, second order), one random seed, the
# MNIST MLP and Karate (compiling the CNN's second-order step alone takes about 30 s), no Table 2 runs.
QUICK_OPTIMIZERS = ["sgd", "adam", "hybrid"]
QUICK_TASKS = ["mnist-mlp", "karate"]
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def _error(text):
    return argparse.ArgumentTypeError(text)


def _positive_int(name):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise _error(f"{name} must be a positive integer; received {text!r}")
        return value

    return parse


def _positive_float(name):
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            raise _error(f"{name} must be a finite number > 0; received {text!r}")
        return value

    return parse


def _choices(option, allowed, aliases=None):
    """A comma-separated subset of `allowed` (or an alias such as `all`), in the given order."""
    aliases = {"all": list(allowed), **(aliases or {})}

    def parse(text):
        names = []
        for n in (n.strip().lower() for n in text.split(",") if n.strip()):
            names += aliases.get(n, [n])
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise _error(f"{option}: unknown {', '.join(bad) or 'empty list'}; valid values: "
                         f"{', '.join([*allowed, *aliases])} (comma-separated)")
        return list(dict.fromkeys(names))

    return parse


# What a --task module:function returns: keras_optzoo.bench.compare's arguments.
USER_TASK_KEYS = ("build_model", "train", "validation", "loss", "metrics", "loss_weights", "epochs", "batch_size",
                  "test", "name")


def _task_choice(text):
    """Built-in task names, or one `module:function` (a user's task)."""
    if ":" not in text:
        return _choices("--task", TASK_NAMES, TASK_ALIASES)(text)
    module, _, function = text.strip().partition(":")
    if not module or not function.isidentifier() or "," in text:
        raise _error(f"--task: {text!r} is not module:function (one user task, alone), nor a list of built-in "
                     f"tasks ({', '.join(TASK_NAMES)})")
    return text.strip()


def load_user_task(spec):
    """Imports `module:function`, calls it and checks the dict it returns."""
    import importlib

    module, _, function = spec.partition(":")
    sys.path.insert(0, os.getcwd())  # a module in the current directory, as `python -m` finds it
    try:
        target = getattr(importlib.import_module(module), function, None)
    finally:
        sys.path.pop(0)
    if not callable(target):
        raise ValueError(f"--task: {module} has no function {function!r}")
    pieces = target()
    if not isinstance(pieces, dict):
        raise ValueError(f"--task: {spec}() must return a dict of keras_optzoo.bench.compare's arguments "
                         f"({', '.join(USER_TASK_KEYS)}); it returned {type(pieces).__name__}")
    unknown = sorted(set(pieces) - set(USER_TASK_KEYS))
    missing = [k for k in ("build_model", "train", "validation", "loss") if k not in pieces]
    if unknown or missing:
        raise ValueError(f"--task: {spec}() returned " + "; ".join(
            ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
            + ([f"no {', '.join(missing)}"] if missing else [])) + f"; allowed keys: {', '.join(USER_TASK_KEYS)}")
    return pieces


def _target(text):
    """A number (every task) or task=value pairs."""
    if "=" not in text:
        return _positive_float("--target")(text)
    out = {}
    for item in text.split(","):
        task, _, value = item.partition("=")
        if task.strip() not in TASK_NAMES:
            raise _error(f"--target: unknown task {task.strip()!r}; valid tasks: {', '.join(TASK_NAMES)} "
                         f"(a number for every task, or task=value,...)")
        out[task.strip()] = _positive_float("--target")(value)
    return out


def _optimizer_help(available):
    from keras_optzoo.bench.optimizers import GRID_FACTORS

    names = ", ".join(available)
    return (f"comma-separated, or all (default; with --quick: {','.join(QUICK_OPTIMIZERS)}). Every name: {names}. "
            f"gd is SGD on the full training set (one step per epoch), sgd mini-batch SGD; newton (diagonal), "
            f"newton_cg, hybrid, adahessian, sophiah(, sophiag) are second order, trained through "
            f"keras_optzoo.with_curvature. Tuned grid: each optimizer's default learning rate (read from its "
            f"class) x {', '.join(f'{f:g}' for f in GRID_FACTORS)}")


def build_parser():
    from keras_optzoo.bench import optimizers

    p = argparse.ArgumentParser(
        prog="optzoo-bench",
        description="Which optimizer, on my task? Compares keras_optzoo optimizers on MNIST (paper 001's MLP and "
                    "a small CNN) and Karate Club link prediction, each at its own tuned learning rate, over "
                    "random seeds, against a target validation loss. The default run took 9 (JAX), 16 (torch) and "
                    "14 (TensorFlow) minutes on 2 CPU cores (docs/guides/benchmark.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--protocol", type=_choices("--protocol", PROTOCOLS), default=["tuned"], metavar="PROTOCOL",
                   help="tuned: every optimizer's learning rate chosen from its grid (see --optimizers) by final "
                        "validation loss on a validation split carved out of the training data (20 %%), on random "
                        "seed 0, all grid points trained for the first fifth of the epochs and the best 2 to the "
                        "end (successive halving), then the chosen one re-run on every seed; fixed: paper 001's "
                        "protocol, every optimizer at --lr; tuned,fixed: both")
    p.add_argument("--task", type=_task_choice, default=None,
                   metavar="TASKS", help=f"comma-separated from {', '.join(TASK_NAMES)}, or mnist (both MNIST "
                                         f"models) or all (default; with --quick: {','.join(QUICK_TASKS)}); or "
                                         f"module:function, your own task: a function returning a dict with the "
                                         f"arguments of keras_optzoo.bench.compare ({', '.join(USER_TASK_KEYS)})")
    p.add_argument("--suite", choices=SUITES, default="default",
                   help="which optimizers run on which task when --task and --optimizers are not given: default "
                        "(" + "; ".join(f"{t}: {','.join(o)}" for t, o in DEFAULT_SUITE.items()) + ") or full (every "
                        "optimizer on every task; 42 min on JAX, 2 cores; docs/guides/benchmark.md)")
    p.add_argument("--optimizers", type=_choices("--optimizers", optimizers.NAMES), default=None,
                   metavar="NAMES", help=_optimizer_help(optimizers.NAMES))
    p.add_argument("--epochs", type=_positive_int("--epochs"),
                   help="epochs for every task (default: mnist-mlp 3, mnist-cnn 10, karate 40, shakespeare 8)")
    p.add_argument("--batch-size", type=_positive_int("--batch-size"),
                   help="default: mnist 64, karate 16, shakespeare 32")
    p.add_argument("--lr", type=_positive_float("--lr"), default=0.01,
                   help="the fixed protocol's learning rate, for every optimizer")
    p.add_argument("--seeds", type=_positive_int("--seeds"), default=None,
                   help=f"random seeds 0..N-1 of the final runs (default {DEFAULT_SEEDS}; with --quick 1)")
    p.add_argument("--target", type=_target, default=None,
                   help="target validation loss: a number for every task, or task=value,... (default: per task, "
                        "the median over the first-order optimizers of their best validation loss)")
    p.add_argument("--stop-threshold", type=float, default=1e-3,
                   help="AdaptiveStopping's relative training-loss improvement below which a run counts as "
                        "converged (paper 000's epochs to converge)")
    p.add_argument("--regularization", type=_choices("--regularization", REGULARIZATIONS), default=None,
                   metavar="NAMES",
                   help="paper 000 Table 2 on the MNIST MLP, comma-separated from none,l1,l2,dropout (default all; "
                        "with --quick none): the runs with a regularizer use --regularization-optimizers at their "
                        "chosen learning rate")
    p.add_argument("--regularization-optimizers", type=_choices("--regularization-optimizers", optimizers.NAMES),
                   default=["hybrid"], metavar="NAMES", help="the optimizers of the Table 2 runs")
    p.add_argument("--karate-model", choices=("gcn", "conv1d"), default="gcn",
                   help="gcn, or conv1d (paper 001's embedding + Conv1D model)")
    p.add_argument("--data", default="embedded",
                   help="MNIST: embedded (the real MNIST 10k test files shipped in the package, split 8,000 train "
                        "/ 2,000 test; the budget above is for these), auto (download with keras.datasets, else "
                        "embedded), keras (download), or a directory holding the four MNIST IDX files")
    p.add_argument("--out", default="optzoo-results", help="output directory (created)")
    p.add_argument("--quick", action="store_true",
                   help="tiny budget for smoke tests: 1,000 MNIST images, 400 Shakespeare windows, 2 (MLP) / 1 (CNN, "
                        "Shakespeare) / 5 (Karate) epochs, "
                        "and unless given otherwise one random seed, --regularization none, --task "
                        f"{','.join(QUICK_TASKS)}, --optimizers {','.join(QUICK_OPTIMIZERS)}")
    p.add_argument("--backend", choices=BACKENDS, help="Keras backend (default: KERAS_BACKEND)")
    return p


def writable(out):
    """Whether `out` is, or can be created as, a writable directory."""
    probe = os.path.abspath(out)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    return os.path.isdir(probe) and os.access(probe, os.W_OK)


def _check_out(parser, out):
    if not writable(out):
        parser.error(f"--out: {out!r} is not a writable directory")


def _check_data(parser, data):
    if data in ("auto", "keras", "embedded"):
        return
    valid = "valid values: auto, keras, embedded, or a directory holding the four MNIST IDX files"
    if not os.path.isdir(data):
        parser.error(f"--data: {data!r} is neither auto, keras, embedded nor a directory; {valid}")
    missing = [f for f in IDX_FILES if not any(os.path.isfile(os.path.join(data, f + gz)) for gz in ("", ".gz"))]
    if missing:
        parser.error(f"--data: the directory {data!r} has no MNIST file {', '.join(f + '[.gz]' for f in missing)}; "
                     f"{valid}")


# What the benchmark imports beyond the base install, and for what. All of it
# is in the `bench` extra.
NEEDS = {"matplotlib": "the PNG plots", "networkx": "the Karate Club graph, --task karate or all"}


def _missing_packages(tasks):
    """The packages of NEEDS this run would import and that are not installed,
    checked before any training so that a run never fails at its end."""
    if isinstance(tasks, str):
        tasks = TASK_ALIASES.get(tasks, [tasks]) if ":" not in tasks else []
    needed = ["matplotlib"] + (["networkx"] if "karate" in tasks else [])
    missing = []
    for name in needed:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    return missing


def _switch_backend(argv):
    """Keras fixes its backend at import: set KERAS_BACKEND before it, or start
    again with the one asked for."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--backend")
    backend = pre.parse_known_args(argv)[0].backend
    if backend not in BACKENDS or backend == os.environ.get("KERAS_BACKEND"):
        return
    if "keras" in sys.modules:
        env = dict(os.environ, KERAS_BACKEND=backend)
        os.execve(sys.executable, [sys.executable, "-m", "keras_optzoo.bench", *argv], env)
    os.environ["KERAS_BACKEND"] = backend


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    from keras_optzoo.bench.optimizers import NAMES

    suite = args.optimizers is None and args.task is None and not args.quick and args.suite == "default"
    if args.optimizers is None:
        args.optimizers = list(QUICK_OPTIMIZERS if args.quick else NAMES)
    if args.seeds is None:
        args.seeds = 1 if args.quick else DEFAULT_SEEDS
    if args.task is None:
        args.task = list(QUICK_TASKS if args.quick else TASK_NAMES)
    # {task: optimizers}: the default suite's choice, else every optimizer asked for on every task.
    args.plan = {t: [n for n in DEFAULT_SUITE[t] if n in NAMES] if suite else list(args.optimizers)
                 for t in ([] if isinstance(args.task, str) else args.task)}
    if isinstance(args.task, str) and args.epochs is None and args.quick:
        args.epochs = 2
    if args.regularization is None:
        args.regularization = ["none"] if args.quick else list(REGULARIZATIONS)
    _check_out(parser, args.out)
    _check_data(parser, args.data)
    if not args.stop_threshold >= 0:
        parser.error(f"--stop-threshold must be a number >= 0; received {args.stop_threshold}")
    missing = _missing_packages(args.task)
    if missing:
        parser.error(
            "missing package(s) " + ", ".join(f"{m} (for {NEEDS[m]})" for m in missing)
            + ': add the bench extra, pip install "keras-optzoo[bench]" (from a checkout: '
            'pip install -e ".[bench]"), or pip install ' + " ".join(missing)
        )
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    _switch_backend(argv)
    args = parse_args(argv)
    from keras_optzoo.bench import run, report

    if isinstance(args.task, str):
        runs, grid_rows = _run_user_task(args)
    else:
        runs, grid_rows = run.run_all(args)
    report.write_all(runs, grid_rows, args.out, "optzoo-bench " + " ".join(argv) if argv else "optzoo-bench")
    print(f"wrote {len(runs)} runs to {os.path.abspath(args.out)}: results.csv, grid.csv, results.md, *.png")
    return 0


def _run_user_task(args):
    """--task module:function: `compare` once per protocol, on the function's pieces."""
    from keras_optzoo.bench import study

    try:
        pieces = load_user_task(args.task)
    except ValueError as error:
        build_parser().error(str(error))
    pieces.setdefault("name", args.task.partition(":")[2])
    for key, value in (("epochs", args.epochs), ("batch_size", args.batch_size)):
        if value is not None:
            pieces[key] = value
    if "epochs" not in pieces:
        build_parser().error(f"--task: {args.task}() returned no epochs; pass --epochs")
    runs, grid_rows = [], []
    for protocol in args.protocol:
        found = study.compare(**pieces, optimizers=args.optimizers, protocol=protocol, seeds=args.seeds,
                              target=args.target if not isinstance(args.target, dict) else None,
                              learning_rate=args.lr if protocol == "fixed" else None)
        runs += found.runs
        grid_rows += found.grid
    return runs, grid_rows
