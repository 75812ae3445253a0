"""Numbers for the README's "Performance tips": ms per training step of a
small MLP under `model.fit`, by thread setting and `jit_compile`.

    python benchmarks/tips.py [--backends tensorflow,jax,torch] [--busy N]

Model: 784-64-10 (ReLU), Adam, batch 64, 50 steps per epoch on the real
MNIST images shipped with the package; ms per step = epoch wall time / 50, the
median of 4 epochs after a warm-up epoch. Each setting runs in a fresh
process, because thread pools are sized at start-up. `--busy N` keeps N
other processes spinning meanwhile: a CPU shared with other work (a second
job, a browser, another engineer's tests), where a thread pool sized to
every core waits for threads that are not scheduled.
"""

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
import keras
import keras_optzoo as kz
from keras_optzoo.tasks import mnist

jit = json.loads(sys.argv[1])
(x, y), _ = mnist.load_embedded()
x, y = x[:64 * 50], y[:64 * 50]
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer=kz.Adam(1e-3), loss="sparse_categorical_crossentropy", jit_compile=jit)
times = []
for epoch in range(5):
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=1, shuffle=False, verbose=0)
    times.append(time.perf_counter() - start)
print("RESULT", json.dumps(1000 * float(np.median(times[1:])) / 50))
"""

SETTINGS = {
    "tensorflow": [("default threads, jit_compile=False", {}, False),
                   ("default threads, jit_compile=True", {}, True),
                   ("OMP_NUM_THREADS=1, jit_compile=True", {"OMP_NUM_THREADS": "1"}, True)],
    "jax": [("default threads, jit_compile=True (default)", {}, True),
            ("default threads, jit_compile=False", {}, False)],
    "torch": [("default threads", {}, False),
              ("OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}, False)],
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--busy", type=int, default=0, help="spinning processes during the runs")
    args = parser.parse_args()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        run(args)
    finally:
        for p in spinners:
            p.kill()


def run(args):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    print(f"{os.cpu_count()} CPUs, {args.busy} busy process(es) alongside")
    print("| backend | setting | ms/step |\n|---|---|---|")
    for backend in args.backends.split(","):
        for label, extra, jit in SETTINGS[backend]:
            env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", **extra)
            env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(jit)], env=env, capture_output=True,
                                 text=True, timeout=900)
            lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
            value = f"{json.loads(lines[-1].split()[1]):.2f}" if lines else "failed: " + out.stderr[-300:]
            print(f"| {backend} | {label} | {value} |", flush=True)


if __name__ == "__main__":
    main()
