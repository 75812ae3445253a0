"""Step time of the second-order optimizers relative to Adam on the MNIST MLP.

    python benchmarks/second_order_cost.py [--backends tensorflow,jax,torch] [--out docs/second_order_cost.md]

Each backend runs in its own process. Model: seed 001's MLP 784-500-10 (ReLU
hidden layer), batch 64, embedded MNIST. Time per step = wall time of an epoch
of 50 steps divided by 50 (so a refresh every 10 steps is amortised), median of
8 epochs after a warm-up epoch (compilation). Ratios are against Adam measured
in the same process.
"""

import argparse
import json
import os
import subprocess
import sys
import time

CASES = [
    ("Adam", "kz.Adam(1e-3)"),
    ("Hybrid k=1", "kz.Hybrid(1e-3, hessian_update_interval=1)"),
    ("Hybrid k=10", "kz.Hybrid(1e-3, hessian_update_interval=10)"),
    ("SophiaH k=1", "kz.SophiaH(1e-3, hessian_update_interval=1)"),
    ("SophiaH k=10", "kz.SophiaH(1e-3, hessian_update_interval=10)"),
    ("AdaHessian k=1", "kz.AdaHessian(0.02)"),
    ("Newton-CG (5 CG steps)", "kz.Newton(0.3, method='cg', damping=1.0, cg_iterations=5)"),
]
STEPS, BATCH = 50, 64


def measure():
    import numpy as np

    import keras
    import keras_optzoo as kz  # noqa: F401  (used by the CASES expressions)
    from keras_optzoo.tasks import mnist

    (x, y), _ = mnist.load_embedded()
    x, y = x[: STEPS * BATCH], y[: STEPS * BATCH]
    results = {}
    for label, expr in CASES:
        keras.utils.set_random_seed(0)
        model = mnist.mlp(hidden_activation="relu")
        opt = eval(expr)
        if isinstance(opt, kz.optimizers.SECOND_ORDER):
            model = kz.with_curvature(model)
        model.compile(optimizer=opt, loss=mnist.LOSS)
        times = []

        class Timer(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                times.append((time.perf_counter() - self.start) / STEPS)

        model.fit(x, y, batch_size=BATCH, epochs=9, shuffle=False, verbose=0, callbacks=[Timer()])
        results[label] = float(np.median(times[1:]))
    # One CurvatureLogger call (k=1, 20 Lanczos HVPs, 10 Hutchinson probes, 256 images).
    logger = kz.callbacks.CurvatureLogger(x[:256], y[:256], k=1, num_probes=10, lanczos_iterations=20)
    logger.set_model(model)
    logger.measure()  # warm-up (compilation)
    calls = []
    for _ in range(3):
        start = time.perf_counter()
        logger.measure()
        calls.append(time.perf_counter() - start)
    return {"backend": keras.backend.backend(), "step_s": results, "logger_s": float(np.median(calls))}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "second_order_cost.md"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(measure()))
        return 0
    rows = []
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        proc = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:])
            return 1
        rows.append(json.loads(line[len("RESULT "):]))
    import platform

    lines = [
        "# Second-order optimizers: step time relative to Adam",
        "",
        f"`python benchmarks/second_order_cost.py` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; MNIST MLP 784-500-10 (ReLU, 397,510 parameters), batch {BATCH}, "
        f"one Hutchinson probe; time per step amortised over {STEPS}-step epochs, median of 8 after warm-up. "
        "Targets: at most 3x Adam at interval 1, at most 1.3x at interval 10.",
        "",
        "| optimizer | " + " | ".join(f"{r['backend']} ms/step | {r['backend']} x Adam" for r in rows) + " |",
        "|---|" + "---|---|" * len(rows),
    ]
    for label, _ in CASES:
        cells = []
        for r in rows:
            t, adam = r["step_s"][label], r["step_s"]["Adam"]
            cells += [f"{1000 * t:.2f}", f"{t / adam:.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "CurvatureLogger, one call on the same MLP (probe batch 256, k=1, 20 Lanczos + 10 Hutchinson HVPs): "
        + ", ".join(f"{r['backend']} {r['logger_s']:.2f} s" for r in rows)
        + ". At every=1 per epoch of 938 steps (60k MNIST, batch 64) that is one call per epoch.",
    ]
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
