"""First-step and first-epoch time of Adam and every second-order optimizer (issue 28, item 4).

    python benchmarks/first_step.py [--backends tensorflow,jax,torch] [--repeats 3] [--images 2000]

What a user waits for before the first progress-bar tick: `fit` on the
benchmark CNN (`tasks.mnist.cnn()`, through `with_curvature`, batch 64,
the first `--images` embedded MNIST images), timed from `fit`'s call to the
end of the first batch (tracing, compiling and running the first step, and
`fit`'s own set-up) and to the end of the first epoch (every program the
epoch needs: with a refresh every k > 1 steps JAX compiles the plain step
at step 2). Each case runs in its own fresh Python process (no compilation
cache shared between cases, as for a user starting a script); `--repeats`
processes per case, median reported, with the ratio to Adam's median on the
same backend. The model is built and the data loaded before the clock
starts. Prints a Markdown table per backend. `--floor` adds the first
call of the backend's own gradient and gradient + HVP on one batch of the
same CNN (no library code), each in a fresh process: the HVP's share of a
first call that no implementation avoids.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

CASES = ("Adam()", "Hybrid()", "AdaHessian()", "SophiaH()", "SophiaG()", "Newton()", "Newton(method='cg')")
# The floor: the backend's own autodiff on one batch, nothing of this library
# (second_order_cost.py's functions): the first call of a gradient, and of a
# gradient plus one HVP, each in its own fresh process (tracing/compiling
# and running them). Their ratio bounds how close any second-order step's
# first call can come to a first-order one's.
FLOOR = ("floor: gradient", "floor: gradient + HVP")


def floor_first_call(case, images):
    import time

    import keras
    import numpy as np
    from second_order_cost import floor_functions

    from keras_optzoo.tasks import mnist

    (x, y), _ = mnist.load_embedded()
    keras.utils.set_random_seed(0)
    model = mnist.cnn()
    x, y = keras.ops.convert_to_tensor(x[:64]), keras.ops.convert_to_tensor(y[:64])
    rng = np.random.default_rng(0)
    probe = [rng.choice(np.float32([-1, 1]), size=tuple(v.shape)) for v in model.trainable_variables]
    grad, grad_and_hvp = floor_functions(model, x, y, probe)
    start = time.perf_counter()
    (grad if case == FLOOR[0] else grad_and_hvp)()
    return {"first_step": time.perf_counter() - start, "first_epoch": float("nan"), "steps": 0}


def one(case, images):
    import time

    import keras

    import keras_optzoo as kz
    from keras_optzoo.tasks import mnist

    (x, y), _ = mnist.load_embedded()
    x, y = x[:images], y[:images]
    keras.utils.set_random_seed(0)
    optimizer = keras.optimizers.Adam() if case == "Adam()" else eval("kz." + case)  # noqa: S307 (our own table)
    model = kz.with_curvature(mnist.cnn())
    model.compile(optimizer=optimizer, loss=mnist.LOSS, metrics=["accuracy"])
    marks = {}

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 0:
                marks["first_step"] = time.perf_counter() - start

        def on_epoch_end(self, epoch, logs=None):
            marks["first_epoch"] = time.perf_counter() - start

    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=1, verbose=0, callbacks=[Clock()])
    steps = -(-len(x) // 64)
    return dict(marks, steps=steps)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated (Adam() always runs)")
    parser.add_argument("--floor", action="store_true", help="also the first call of a bare gradient and gradient + HVP")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # one measurement, in a child process
    args = parser.parse_args(argv)
    if args.case:
        result = (floor_first_call if args.case in FLOOR else one)(args.case, args.images)
        print("RESULT " + json.dumps(result))
        return
    cases = ["Adam()"] + [c for c in args.cases.split(",") if c in CASES and c != "Adam()"]
    if args.floor:
        cases += list(FLOOR)
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        runs = {case: [] for case in cases}
        for _ in range(args.repeats):  # round-robin, so that drift lands on every case alike
            for case in cases:
                out = subprocess.run([sys.executable, __file__, "--case", case, "--images", str(args.images)],
                                     env=env, capture_output=True, text=True, check=True).stdout  # fmt: skip
                runs[case].append(json.loads(out.split("RESULT ", 1)[1]))
        import keras  # for the version line only (the parent's backend does not matter)

        print(f"\nbackend {backend}, keras {keras.__version__}, CNN, batch 64, {args.images} images "
              f"({runs['Adam()'][0]['steps']} steps), median of {args.repeats} fresh processes")  # fmt: skip
        print("| optimizer | first step (s) | x Adam | first epoch (s) | x Adam |")
        print("|---|---|---|---|---|")
        base = {k: statistics.median(r[k] for r in runs["Adam()"]) for k in ("first_step", "first_epoch")}
        for case in cases:
            med = {k: statistics.median(r[k] for r in runs[case]) for k in base}
            if case == FLOOR[1]:  # its ratio to the bare gradient's first call, not to Adam's
                ratio = med["first_step"] / statistics.median(r["first_step"] for r in runs[FLOOR[0]])
                print(f"| {case} | {med['first_step']:.2f} | {ratio:.2f} x the gradient's | | |")
                continue
            print(f"| {case} | {med['first_step']:.2f} | {med['first_step'] / base['first_step']:.2f} | "
                  f"{med['first_epoch']:.2f} | {med['first_epoch'] / base['first_epoch']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
