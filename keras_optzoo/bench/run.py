"""Runs the benchmark: one `model.fit` per task x regularization x optimizer x seed."""

import time

import numpy as np

import keras
import keras_optzoo as kz
from keras_optzoo.bench import DEFAULTS, QUICK
from keras_optzoo.callbacks import AdaptiveStopping
from keras_optzoo.tasks import karate, mnist

# Benchmark name -> (optimizer factory taking the learning rate, label). "gd" is
# SGD on the full batch. The second-order ones train through with_curvature;
# Newton's damping is 1.0 (a step of at most lr * |g| where curvature is ~0).
NAMED = {
    "gd": (kz.SGD, "GD (full batch)"),
    "sgd": (kz.SGD, "SGD (mini-batch)"),
    "momentum": (kz.Momentum, "Momentum"),
    "nesterov": (kz.Nesterov, "Nesterov (NAG)"),
    "adagrad": (kz.Adagrad, "AdaGrad"),
    "rmsprop": (kz.RMSprop, "RMSProp"),
    "adam": (kz.Adam, "Adam"),
    "amsgrad": (kz.AMSGrad, "AMSGrad"),
    "adamw": (kz.AdamW, "AdamW"),
    "newton": (lambda lr: kz.Newton(lr, damping=1.0, num_probes=2), "Newton (diagonal)"),
    "newton_cg": (lambda lr: kz.Newton(lr, method="cg", damping=1.0, cg_iterations=5), "Newton-CG"),
    "hybrid": (kz.Hybrid, "Hybrid (seed 000)"),
    "adahessian": (kz.AdaHessian, "AdaHessian"),
    "sophiah": (kz.SophiaH, "Sophia-H"),
}


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch (Keras logs none)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._start)

    def on_train_begin(self, logs=None):
        self.times = []


def _load_mnist(args):
    if args.data == "embedded":
        data = mnist.load_embedded()
    elif args.data in ("auto", "keras"):
        data = mnist.load_data(source=args.data)
    else:
        data = mnist.load_idx(args.data)
    (x_train, y_train), (x_test, y_test) = data
    if args.quick:
        x_train, y_train = x_train[: QUICK["mnist"]["train"]], y_train[: QUICK["mnist"]["train"]]
        x_test, y_test = x_test[: QUICK["mnist"]["test"]], y_test[: QUICK["mnist"]["test"]]
    return x_train, y_train, x_test, y_test


def plan(args):
    """The list of runs (dicts) the arguments ask for."""
    tasks = ["mnist", "karate"] if args.task == "all" else [args.task]
    runs = []
    for task in tasks:
        regs = args.regularization if task == "mnist" else ["none"]
        epochs = args.epochs or (QUICK[task]["epochs"] if args.quick else DEFAULTS[task]["epochs"])
        batch_size = args.batch_size or DEFAULTS[task]["batch_size"]
        for reg in regs:
            for name in args.optimizers:
                for seed in range(args.seeds):
                    runs.append(dict(task=task, regularization=reg, optimizer=name, seed=seed,
                                     epochs=epochs, batch_size=batch_size, learning_rate=args.lr))
    return runs


def _one_run(spec, data, args):
    keras.utils.set_random_seed(spec["seed"])
    task = spec["task"]
    if task == "mnist":
        x_train, y_train, x_test, y_test = data["mnist"]
        model = mnist.mlp(regularization=spec["regularization"])
        loss, metrics, model_name = mnist.LOSS, ["accuracy"], "mlp-784-500-10"
    else:
        split = karate.split_edges(seed=spec["seed"])
        x_train, y_train, x_test, y_test = (split[k] for k in ("x_train", "y_train", "x_test", "y_test"))
        model = karate.build_model(args.karate_model, split)
        loss, metrics, model_name = karate.LOSS, ["accuracy", keras.metrics.AUC(name="auc")], args.karate_model
    optimizer = NAMED[spec["optimizer"]][0](spec["learning_rate"])
    if isinstance(optimizer, kz.optimizers.SECOND_ORDER):
        model = kz.with_curvature(model)
    batch_size = len(x_train) if spec["optimizer"] == "gd" else spec["batch_size"]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    timer = EpochTimer()
    callbacks = [timer]
    stopper = None
    if args.adaptive_stopping:
        stopper = AdaptiveStopping(monitor="loss", threshold=args.stop_threshold, min_epochs=2)
        callbacks.append(stopper)
    start = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=spec["epochs"],
                        validation_data=(x_test, y_test), callbacks=callbacks, verbose=0,
                        shuffle=True)
    total = time.perf_counter() - start
    evaluation = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    h = history.history
    row = dict(spec)
    row.update(
        backend=keras.backend.backend(),
        model=model_name,
        batch_size=batch_size,
        epochs_run=len(h["loss"]),
        epochs_to_converge=stopper.converged_epoch if stopper else None,
        final_train_loss=h["loss"][-1],
        final_val_loss=h["val_loss"][-1],
        test_accuracy=evaluation["accuracy"],
        test_auc=evaluation.get("auc"),
        # The first epoch includes tracing/compilation; report the steady state.
        time_per_epoch_s=float(np.median(timer.times[1:] if len(timer.times) > 1 else timer.times)),
        total_time_s=total,
        loss_curve=[float(v) for v in h["loss"]],
        val_loss_curve=[float(v) for v in h["val_loss"]],
    )
    return row


def run_all(args):
    runs = plan(args)
    data = {}
    if any(r["task"] == "mnist" for r in runs):
        data["mnist"] = _load_mnist(args)
    print(f"optzoo-bench: {len(runs)} runs on the {keras.backend.backend()} backend")
    bar = keras.utils.Progbar(len(runs), unit_name="run")
    results = []
    for i, spec in enumerate(runs):
        row = _one_run(spec, data, args)
        results.append(row)
        converge = f", converged at epoch {row['epochs_to_converge']}" if row["epochs_to_converge"] else ""
        auc = f", auc {row['test_auc']:.3f}" if row["test_auc"] is not None else ""
        print(
            f"\n{row['task']:<6} {row['regularization']:<7} {NAMED[row['optimizer']][1]:<18} seed {row['seed']}: "
            f"loss {row['final_train_loss']:.4f} / val {row['final_val_loss']:.4f}, "
            f"acc {row['test_accuracy']:.4f}{auc}, {row['time_per_epoch_s']:.2f} s/epoch{converge}"
        )
        bar.update(i + 1)
    print()
    return results
