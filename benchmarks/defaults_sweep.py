"""The sweep behind the second-order optimizers' defaults (docs/defaults.md).

    KERAS_BACKEND=jax python benchmarks/defaults_sweep.py [--images 2000] [--epochs 3]

Trains each candidate setting on real MNIST (the embedded 8,000-image split,
the first `--images`), batch 64, for `--epochs` epochs, on two models: the
MLP 784-500-10 with a ReLU hidden layer (`tasks.mnist.mlp("relu")`) and the
small CNN (`tasks.mnist.cnn()`, Conv2D-BatchNorm-Pool twice, Dense), from
the same initial weights (seed 0), and prints the final training loss and
accuracy of each next to `keras.optimizers.Adam()`'s, as a Markdown table.
A default is acceptable when its loss is no higher than Adam's on both
models (Newton: never diverges, >= 85 % training accuracy on both).
"""

import argparse
import math
import time
from functools import partial

import keras

import keras_optzoo as kz
from keras_optzoo.tasks import mnist

CANDIDATES = {
    "Adam()": lambda: keras.optimizers.Adam(),
    "Hybrid(lr=1e-3)": lambda: kz.Hybrid(1e-3),
    "Hybrid(lr=3e-3)": lambda: kz.Hybrid(3e-3),
    "Hybrid(lr=1e-2)": lambda: kz.Hybrid(1e-2),
    "Hybrid(lr=3e-2)": lambda: kz.Hybrid(3e-2),
    "Hybrid(lr=5e-2)": lambda: kz.Hybrid(5e-2),
    "Hybrid(lr=1e-1)": lambda: kz.Hybrid(1e-1),
    "Hybrid(lr=3e-2, beta_3=0.999)": lambda: kz.Hybrid(3e-2, beta_3=0.999),
    "AdaHessian(lr=0.1, epsilon=1e-2)": lambda: kz.AdaHessian(0.1, epsilon=1e-2),
    "AdaHessian(lr=0.05, epsilon=1e-2)": lambda: kz.AdaHessian(0.05, epsilon=1e-2),
    "Hybrid(lr=5e-2, beta_3=0.9)": lambda: kz.Hybrid(5e-2, beta_3=0.9),
    "Hybrid(lr=7e-2)": lambda: kz.Hybrid(7e-2),
    "AdaHessian(lr=0.03, epsilon=1e-3)": lambda: kz.AdaHessian(0.03, epsilon=1e-3),
    "AdaHessian(lr=0.05, epsilon=1e-3)": lambda: kz.AdaHessian(0.05, epsilon=1e-3),
    "AdaHessian(lr=0.1, epsilon=0.1)": lambda: kz.AdaHessian(0.1, epsilon=0.1),
    "AdaHessian(lr=0.02, hessian_power=0.5)": lambda: kz.AdaHessian(0.02, hessian_power=0.5),
    "AdaHessian(lr=0.01, hessian_power=0.5)": lambda: kz.AdaHessian(0.01, hessian_power=0.5),
    "AdaHessian(lr=0.15)": lambda: kz.AdaHessian(0.15),
    "AdaHessian(lr=0.05)": lambda: kz.AdaHessian(0.05),
    "AdaHessian(lr=0.02)": lambda: kz.AdaHessian(0.02),
    "AdaHessian(lr=0.01)": lambda: kz.AdaHessian(0.01),
    "SophiaH(lr=1e-3)": lambda: kz.SophiaH(1e-3),
    "SophiaH(lr=3e-3)": lambda: kz.SophiaH(3e-3),
    "SophiaH(lr=1e-3, gamma=0.05)": lambda: kz.SophiaH(1e-3, gamma=0.05),
    "SophiaH(lr=2e-3, gamma=0.05)": lambda: kz.SophiaH(2e-3, gamma=0.05),
    "SophiaH(lr=1e-3, k=1)": lambda: kz.SophiaH(1e-3, hessian_update_interval=1),
    "SophiaH(lr=2e-3, gamma=0.1)": lambda: kz.SophiaH(2e-3, gamma=0.1),
    "SophiaG(lr=2e-3)": lambda: kz.SophiaG(2e-3),
    "SophiaG(lr=1e-3, gamma=0.2)": lambda: kz.SophiaG(1e-3, gamma=0.2),
    "SophiaG(lr=1e-3)": lambda: kz.SophiaG(1e-3),
    "SophiaG(lr=3e-3)": lambda: kz.SophiaG(3e-3),
    "Newton(damping=0.1)": lambda: kz.Newton(damping=0.1),
    "Newton(damping=1)": lambda: kz.Newton(damping=1.0),
    # Newton-CG at lr 1, its default when the first sweep ran (now 0.5).
    "Newton(method='cg', damping=1)": lambda: kz.Newton(1.0, method="cg", damping=1.0),
    "Newton(method='cg', curvature='ggn', damping=1)": lambda: kz.Newton(1.0, method="cg", curvature="ggn", damping=1.0),
}
# The shipped defaults, as a user meets them: no arguments.
DEFAULTS = {
    "Adam()": lambda: keras.optimizers.Adam(),
    "Hybrid()": kz.Hybrid, "AdaHessian()": kz.AdaHessian, "SophiaH()": kz.SophiaH, "SophiaG()": kz.SophiaG,
    "Newton()": kz.Newton, "Newton(method='cg')": lambda: kz.Newton(method="cg"),
}  # fmt: skip
# SOAP and Shampoo (plain compile) against the anchor their issue names.
KRONECKER = {"AdamW()": lambda: keras.optimizers.AdamW(), "SOAP()": kz.SOAP, "Shampoo()": kz.Shampoo}
# The second, multi-seed sweep (`--grid --seeds 5`): learning rate x the constant that bounds the step.
GRID = {"Adam()": lambda: keras.optimizers.Adam()}
for _lr, _gamma in ((2e-3, 0.05), (3e-3, 0.05), (3e-3, 0.1), (3e-3, 0.2), (5e-3, 0.1), (5e-3, 0.2), (1e-2, 0.2)):
    for _cls in (kz.SophiaH, kz.SophiaG):
        GRID[f"{_cls.__name__}(lr={_lr:g}, gamma={_gamma:g})"] = partial(_cls, _lr, gamma=_gamma)
for _lr, _eps in ((0.1, 0.1), (0.15, 0.1), (0.1, 0.03), (0.2, 0.3), (0.3, 0.3), (0.05, 0.03)):
    GRID[f"AdaHessian(lr={_lr:g}, epsilon={_eps:g})"] = partial(kz.AdaHessian, _lr, epsilon=_eps)
MODELS = {"MLP": lambda: mnist.mlp("relu"), "CNN": mnist.cnn}


def train(make_model, make_optimizer, x, y, epochs, seed=0):
    keras.utils.set_random_seed(seed)
    model = kz.with_curvature(make_model())
    model.compile(optimizer=make_optimizer(), loss=mnist.LOSS, metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=64, epochs=epochs, shuffle=True, verbose=0).history
    return history["loss"][-1], history["accuracy"][-1], time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 (weights and batch order); mean shown")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, from " + ", ".join(MODELS))
    parser.add_argument("--only", default="", help="comma-separated substrings of candidate names")
    parser.add_argument("--defaults", action="store_true", help="only the shipped defaults (no arguments) and Adam()")
    parser.add_argument("--grid", action="store_true", help="the learning-rate x gamma/epsilon grid (GRID)")
    parser.add_argument("--kronecker", action="store_true", help="SOAP() and Shampoo() against AdamW() (KRONECKER)")
    args = parser.parse_args(argv)
    candidates = DEFAULTS if args.defaults else GRID if args.grid else KRONECKER if args.kronecker else CANDIDATES
    models = {m: MODELS[m] for m in args.models.split(",")}
    (x, y), _ = mnist.load_embedded()
    x, y = x[: args.images], y[: args.images]
    anchor = next(iter(candidates))  # Adam(), or AdamW() for --kronecker
    names = [n for n in candidates if not args.only or n == anchor or any(s in n for s in args.only.split(","))]
    seeds = range(args.seeds)
    print(f"backend {keras.backend.backend()}, {len(x)} images, {args.epochs} epochs, batch 64, seeds {list(seeds)}")
    wins = " | wins" if args.seeds > 1 else ""
    print("| setting | " + " | ".join(f"{m} loss | {m} acc.{wins}" for m in models) + " |")
    print("|---|" + "---|---|" * len(models) + "---|" * len(models) * (args.seeds > 1))
    adam = {}
    for name in names:
        cells = []
        for model_name, make_model in models.items():
            runs = [train(make_model, candidates[name], x, y, args.epochs, seed)[:2] for seed in seeds]
            losses = [loss for loss, _ in runs]
            adam.setdefault(model_name, losses)
            loss, acc = sum(losses) / len(runs), sum(a for _, a in runs) / len(runs)
            mark = "" if not math.isfinite(loss) or loss > sum(adam[model_name]) / len(runs) else " *"
            cell = f"{loss:.3f}{mark} | {100 * acc:.1f} %"
            if args.seeds > 1:  # on how many seeds it ends no higher than Adam from the same weights
                cell += f" | {sum(a >= b for a, b in zip(adam[model_name], losses))}/{len(runs)}"
            cells.append(cell)
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n* = mean training loss no higher than {anchor}'s on that model")


if __name__ == "__main__":
    main()
