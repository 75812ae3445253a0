"""curvature.Hessian on a real network, per backend (issue 27, item 4).

    python benchmarks/curvature_mobilenet.py [--backends tensorflow,jax,torch] [--images 32]
                                             [--iterations 30] [--probes 5] [--repeats 3]
                                             [--out docs/curvature_mobilenet.md]

The model is `keras.applications.MobileNetV2(input_shape=(32, 32, 3),
weights=None, classes=10)` (2.2M trainable parameters in 158 variables,
BatchNormalization in inference mode as `Hessian` documents), seeded, on
`--images` random images with random labels and the model's own softmax
under "sparse_categorical_crossentropy"; the first backend's initial weights
are saved and loaded by the others, so every backend differentiates the same
function and its lambda_max and trace (same probes) must agree to float32
rounding. Each backend runs in its own process
(Keras fixes the backend at import), one after the other, so the timings do
not share the cores.

Reported per backend, wall-clock seconds:

- cold: `Hessian(...)` construction plus its first `hvp` (JAX compiles the
  gradient and the HVP programs there, TensorFlow traces its tf.functions),
  and the first `gradient()`;
- warm: the median of `--repeats` calls of `gradient()` and of one `hvp`
  (the floor: what one HVP costs once compiled), and the median of
  `--repeats` timings of `rademacher_probes(variables, 1)` (the probe draw);
- whole calls, warm: `top_eigenvalues(1, iterations)` (Lanczos,
  `iterations` HVPs), `trace(num_probes)` and `density(iterations, 1)`;
- HVP / gradient: the ratio of the two warm medians (forward-over-reverse
  costs about 2-4 gradients in theory);
- memory: the process's peak resident set (`ru_maxrss`) and its growth over
  the resident set once the model and data are built, in GB.

The table ends with each backend's time relative to the fastest backend for
the same column. Random data: the timings do not depend on the values.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("tensorflow", "jax", "torch")
COLUMNS = [  # (key, header)
    ("cold_first_hvp", "cold: build + first HVP"),
    ("cold_gradient", "cold: first gradient"),
    ("gradient", "gradient"),
    ("hvp", "HVP"),
    ("probe", "probe draw"),
    ("top_eigenvalues", "top_eigenvalues(1)"),
    ("trace", "trace"),
    ("density", "density"),
]

WORKER = r"""
import importlib, json, os, resource, statistics, sys, time
import numpy as np
import keras
from keras_optzoo import curvature
from keras_optzoo.curvature.hessian import rademacher_probes

images, iterations, probes, repeats = (int(a) for a in sys.argv[1:5])
weights = sys.argv[5]


def rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def median(fn):
    return statistics.median(timed(fn)[0] for _ in range(repeats))


keras.utils.set_random_seed(0)
model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, classes=10)
if os.path.exists(weights):  # the first backend's initial weights, so every backend has the same Hessian
    model.load_weights(weights)
else:
    model.save_weights(weights)
rng = np.random.default_rng(0)
x = rng.standard_normal((images, 32, 32, 3)).astype("float32")
y = rng.integers(0, 10, images).astype("int32")
model.predict(x, verbose=0)
resident = rss_gb()
backend = keras.config.backend()
out = {"parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
       "variables": len(model.trainable_variables),
       "versions": f"Keras {keras.__version__}, {backend} {importlib.import_module(backend).__version__}"}
probe = [np.ones(v.shape, "float32") for v in model.trainable_variables]


def build_and_hvp():
    h = curvature.Hessian(model, "sparse_categorical_crossentropy", x, y)
    h.hvp(probe)
    return h


out["cold_first_hvp"], h = timed(build_and_hvp)
out["cold_gradient"], _ = timed(h.gradient)
out["gradient"] = median(h.gradient)
out["hvp"] = median(lambda: h.hvp(probe))
out["probe"] = median(lambda: rademacher_probes(model.trainable_variables, 1, seed=1))
out["top_eigenvalues"], top = timed(lambda: h.top_eigenvalues(1, iterations=iterations))
out["trace"], trace = timed(lambda: h.trace(num_probes=probes))
out["density"], _ = timed(lambda: h.density(iterations=iterations, num_runs=1))
out["lambda_max"], out["trace_value"] = float(top[0]), float(trace)
out["peak_rss_gb"] = rss_gb()
out["growth_gb"] = out["peak_rss_gb"] - resident
print("RESULT " + json.dumps(out))
"""


def run_backend(backend, args, weights):
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-c", WORKER, str(args.images), str(args.iterations), str(args.probes),
               str(args.repeats), weights]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
    if done.returncode or not lines:
        sys.exit(f"{backend} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def table(results, args):
    lines = [
        f"MobileNetV2(32x32, weights=None, classes=10), {args.images} images; seconds "
        f"(warm: median of {args.repeats}); top_eigenvalues and density with {args.iterations} "
        f"Lanczos HVPs, trace with {args.probes} probes; {os.cpu_count()} CPU cores.",
        "",
        "| backend | " + " | ".join(h for _, h in COLUMNS) + " | HVP / gradient | peak RSS (growth) |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for backend, r in results.items():
        cells = [f"{r[k]:.3g}" for k, _ in COLUMNS]
        lines.append(f"| {r['versions']} | " + " | ".join(cells)
                     + f" | {r['hvp'] / r['gradient']:.2f} | {r['peak_rss_gb']:.2f} GB ({r['growth_gb']:.2f}) |")
    if len(results) > 1:
        lines += ["", "Relative to the fastest backend per column (and memory growth to the smallest):", "",
                  "| backend | " + " | ".join(h for _, h in COLUMNS) + " | growth |",
                  "|---" * (len(COLUMNS) + 2) + "|"]
        for backend, r in results.items():
            cells = [f"{r[k] / min(o[k] for o in results.values()):.2f}x" for k, _ in COLUMNS]
            growth = r["growth_gb"] / max(min(o["growth_gb"] for o in results.values()), 1e-9)
            lines.append(f"| {backend} | " + " | ".join(cells) + f" | {growth:.2f}x |")
    values = ", ".join(f"{b} {r['lambda_max']:.6g} / {r['trace_value']:.6g}" for b, r in results.items())
    lines += ["", f"lambda_max / trace estimate per backend (same weights, data and probes): {values}."]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the table to this file")
    args = parser.parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    if unknown := [b for b in backends if b not in BACKENDS]:
        parser.error(f"--backends: unknown {unknown}; choose from {', '.join(BACKENDS)}")
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        weights = os.path.join(directory, "mobilenet.weights.h5")
        for backend in backends:
            print(f"running {backend} ...", flush=True)
            results[backend] = run_backend(backend, args, weights)
            print(json.dumps(results[backend]), flush=True)
    text = table(results, args)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
