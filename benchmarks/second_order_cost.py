"""Whole-training-step cost of the second-order optimizers relative to Adam (issue 14).

    python benchmarks/second_order_cost.py [--backends tensorflow,jax,torch] [--models mlp,cnn]
                                           [--sizes 2048,8192] [--rounds 5] [--quick]
                                           [--out docs/second_order_cost.md]

Each backend runs in its own process (Keras fixes its backend at import); in
that process every case (optimizer x `hessian_update_interval`) gets its own
model, all built from the same seed, and is timed round-robin: one warm-up
`fit` epoch per case (compilation), then `--rounds` rounds of one `fit` epoch
per case, the order of the cases rotated each round, so that the machine's
drift lands on every case alike. Reported per (model, number of images):
milliseconds per step = median epoch time / steps per epoch (a whole epoch,
so a refresh every 10 steps is amortised and `fit`'s own per-step overhead
is included), and the ratio to Adam's median in the same process; the
spread column is the range of the per-round ratios (case / Adam in the same
round). The CPU columns are the same with the process's CPU time
(`time.process_time`, all its threads) in place of wall time: on a shared
machine they leave out the time spent waiting for a core, so with
`--threads 1` they are the steadier measure of the work itself (they also
leave out time the process sleeps, e.g. waiting for a GPU).

Models: seed 001's MLP 784-500-10 with the paper's linear hidden layer
(`mnist.mlp()`, 397,510 parameters) and `mnist.cnn()` (Conv2D-BatchNorm-Pool
twice, Dense 64, Dense 10; 56k parameters); embedded MNIST images, batch 64,
one Hutchinson probe.

Memory: the peak extra memory of one refresh step (iterations a multiple of
the interval), in bytes per byte of trainable parameters, beyond what is
resident before the step (weights, optimizer state, curvature slots). Adam's
row gives the step's own baseline (gradients, activations). How:

- torch, CPU: the torch profiler's memory accounting (`profile_memory=True`):
  every tensor allocation and free of one `train_on_batch`, summed in time
  order, maximum of the running sum. GPU: `torch.cuda.max_memory_allocated`
  after `reset_peak_memory_stats`, minus the memory allocated before.
- TensorFlow: `tf.config.experimental.get_memory_info(device)["peak"]` after
  `reset_memory_stats`, minus `"current"` before one `train_on_batch` (the
  allocator's own counters; CPU and GPU).
- JAX: XLA's buffer assignment of the compiled train step,
  `jax.jit(model.train_step, donate_argnums=0).lower(state, batch).compile()
  .memory_analysis()`: temporaries plus outputs not aliased to the donated
  state; at interval > 1 the refresh step's program (the plain step is a
  second, smaller program).

Limits: allocator-level counts, not the process's RSS (torch's CPU count
sees tensors only, not oneDNN scratch or Python objects; TensorFlow's CPU
counter is its default allocator's); JAX's number is XLA's plan, which the
runtime follows on CPU and GPU but which leaves out the runtime's own pools.
Numbers are comparable within a backend (rows against Adam), less so across.

HVP floor: what one Hutchinson probe costs when written directly with the
backend's own autodiff and nothing of this library, on one batch of the
Adam case's model in training mode (CPU time, medians of 30, the two
alternating): the gradient alone (torch `autograd.grad`; JAX `jit(grad)` of
`stateless_call`; TensorFlow a `GradientTape` in a `tf.function`, no XLA, as
`fit` runs on a CPU-only machine) against the gradient and one HVP
together (torch double backward; JAX `jvp` of `grad`, forward-over-reverse,
both outputs kept; TensorFlow nested tapes, reverse-over-reverse, traced
with the exact batch moments the library uses: forward-over-reverse with
`ForwardAccumulator` measured slower here, MLP 3.7 vs 2.9 ms, CNN 28 vs
25 ms). The column "HVP floor x Adam" is 1 + (r - 1) min(G, A) /
(interval A), r the stand-alone (gradient + HVP) / gradient, G its
gradient's and A Adam's CPU ms per step: the cost of a step whose update,
probes and averages were free, with the gradient costing at most Adam's
whole step. It is an estimate, not a bound: a compiler can do
better inside the whole step than in the stand-alone program (JAX's CNN
does). Where it is above the target, meeting the target needs a cheaper
HVP than the backend's autodiff gives for that model on that machine; the
verdict line counts those cells. (Sophia-G has no HVP: its estimate is
one more backward pass from sampled labels; no floor given.)

Targets (issue 14): at interval 10 every second-order step <= 1.1x Adam's;
at interval 1 <= 2.0x. The verdict line per backend says "met" only if
every (model, size, optimizer) cell meets its target in this run (wall
time; the same verdict on CPU time follows it).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

BATCH = 64
ADAM = "Adam"
# (label, optimizer family, interval, constructor expression).
CASES = [
    (ADAM, "Adam", None, "kz.Adam(1e-3)"),
    ("Hybrid k=1", "Hybrid", 1, "kz.Hybrid(1e-3, hessian_update_interval=1)"),
    ("Hybrid k=10", "Hybrid", 10, "kz.Hybrid(1e-3, hessian_update_interval=10)"),
    ("AdaHessian k=1", "AdaHessian", 1, "kz.AdaHessian(0.02, hessian_update_interval=1)"),
    ("AdaHessian k=10", "AdaHessian", 10, "kz.AdaHessian(0.02, hessian_update_interval=10)"),
    ("SophiaH k=1", "SophiaH", 1, "kz.SophiaH(1e-3, hessian_update_interval=1)"),
    ("SophiaH k=10", "SophiaH", 10, "kz.SophiaH(1e-3, hessian_update_interval=10)"),
    ("SophiaG k=1", "SophiaG", 1, "kz.SophiaG(1e-3, hessian_update_interval=1)"),
    ("SophiaG k=10", "SophiaG", 10, "kz.SophiaG(1e-3, hessian_update_interval=10)"),
]
TARGETS = {1: 2.0, 10: 1.1}
MODELS = ("mlp", "cnn")


# --------------------------------------------------------------------------
# Child: one backend.
def build(model_name, expr):
    import keras

    import keras_optzoo as kz  # noqa: F401  (used by the CASES expressions)
    from keras_optzoo.tasks import mnist

    keras.utils.set_random_seed(0)
    model = mnist.mlp() if model_name == "mlp" else mnist.cnn()
    opt = eval(expr)
    if isinstance(opt, kz.optimizers.SECOND_ORDER):
        model = kz.with_curvature(model)
    model.compile(optimizer=opt, loss=mnist.LOSS)
    return model


def param_bytes(model):
    import numpy as np

    return sum(int(np.prod(v.shape)) * 4 for v in model.trainable_variables)


def to_refresh_step(model, x, y, interval):
    """train_on_batch until the next step is a refresh (iterations % interval == 0)."""
    import keras

    while int(keras.ops.convert_to_numpy(model.optimizer.iterations)) % (interval or 1):
        model.train_on_batch(x, y)


def peak_torch(model, x, y):
    import numpy as np
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        model.train_on_batch(x, y)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch._C._profiler import _EventType

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        model.train_on_batch(x, y)
    sizes, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.typed[0] == _EventType.Allocation:
            sizes.append((node.start_time_ns, node.typed[1].alloc_size))
    sizes.sort()
    return int(max(0, np.cumsum([s for _, s in sizes]).max())) if sizes else None


def peak_tensorflow(model, x, y):
    import tensorflow as tf

    device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
    try:
        tf.config.experimental.reset_memory_stats(device)
        before = tf.config.experimental.get_memory_info(device)["current"]
        model.train_on_batch(x, y)
        return tf.config.experimental.get_memory_info(device)["peak"] - before
    except (ValueError, RuntimeError):
        return None  # the allocator keeps no statistics


def peak_jax(model, x, y):
    import functools

    import jax

    from keras_optzoo.curvature import CurvatureModel

    model.train_on_batch(x, y)  # builds everything the train step reads
    state = model._get_jax_state(  # Keras 3.15: the (trainable, non-trainable, optimizer, metrics) values
        trainable_variables=True, non_trainable_variables=True, optimizer_variables=True, metrics_variables=True,
        purge_model_variables=False,
    )  # fmt: skip
    step = model.train_step
    if isinstance(model, CurvatureModel):  # interval > 1: the refresh program (`make_train_function`)
        step = functools.partial(model.train_step, refresh=True)
    compiled = jax.jit(step, donate_argnums=0).lower(state, (x, y)).compile()
    m = compiled.memory_analysis()
    if m is None:
        return None
    return m.temp_size_in_bytes + max(0, m.output_size_in_bytes - m.alias_size_in_bytes)


# The floor: the backend's own autodiff, nothing of this library. Each
# `floor_<backend>` returns two functions of the model's current weights, on
# one batch in training mode: the gradient, and the gradient plus one HVP
# (returning the HVP, as host arrays: tests/test_bench.py checks it against
# finite differences).
def floor_torch(model, loss_fn, x, y, probe):
    import torch

    x, y = torch.as_tensor(x), torch.as_tensor(y)
    z = [torch.as_tensor(p) for p in probe]

    def grad():
        params = [v.value for v in model.trainable_variables]
        g = torch.autograd.grad(loss_fn(y, model(x, training=True)), params)
        return [t.cpu().numpy() for t in g]

    def grad_and_hvp():
        params = [v.value for v in model.trainable_variables]
        g = torch.autograd.grad(loss_fn(y, model(x, training=True)), params, create_graph=True)
        return [t.cpu().numpy() for t in torch.autograd.grad(g, params, grad_outputs=z)]

    return grad, grad_and_hvp


def floor_jax(model, loss_fn, x, y, probe):
    import jax
    import numpy as np

    def loss(trainable, non_trainable):
        y_pred, updated = model.stateless_call(trainable, non_trainable, x, training=True)
        return loss_fn(y, y_pred), updated

    gradient = jax.grad(loss, has_aux=True)
    g = jax.jit(gradient)
    # forward-over-reverse (reverse-over-reverse took twice as long here).
    # Both outputs are returned: with the HVP alone, XLA drops the parts of
    # the gradient that the tangent does not need (CNN: 33 instead of 49 ms).
    h = jax.jit(lambda t, nt, z: jax.jvp(lambda w: gradient(w, nt), (t,), (z,), has_aux=True)[:2])

    def weights():
        return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]

    def grad_and_hvp():
        grads, hvps = jax.block_until_ready(h(*weights(), list(probe)))
        return [np.asarray(t) for t in hvps]

    return lambda: [np.asarray(t) for t in g(*weights())[0]], grad_and_hvp


def floor_tensorflow(model, loss_fn, x, y, probe):
    import tensorflow as tf

    # Keras's TensorFlow moments have a wrong second derivative (see
    # keras_optzoo/backend/tensorflow/hvp_moments.py): the HVP is traced with
    # the exact ones, as the library's is; the gradient with Keras's own.
    from keras_optzoo.backend.tensorflow.hvp_moments import exact_function

    params = model.trainable_variables
    z = [tf.constant(p) for p in probe]

    @tf.function  # as `fit` on a CPU-only machine (Keras's "auto" leaves XLA off there)
    def grad():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return tape.gradient(loss, params)

    @exact_function
    def grad_and_hvp():
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_fn(y, model(x, training=True))
            g = inner.gradient(loss, params)
            gz = tf.add_n([tf.reduce_sum(a * b) for a, b in zip(g, z)])
        return outer.gradient(gz, params)

    return (lambda: [t.numpy() for t in grad()]), (lambda: [t.numpy() for t in grad_and_hvp()])


def floor_functions(model, x, y, probe):
    import keras

    fns = {"torch": floor_torch, "jax": floor_jax, "tensorflow": floor_tensorflow}[keras.backend.backend()]
    return fns(model, keras.losses.SparseCategoricalCrossentropy(), x, y, probe)


def floor(grad_ms, hvp_ms, adam_ms, interval):
    """The HVP floor as a multiple of Adam's step: the HVP costs
    hvp_ms / grad_ms - 1 gradients, a gradient at most Adam's whole step
    (JAX's stand-alone gradient of the CNN took more CPU than `fit`'s whole
    Adam step), one refresh every `interval` steps."""
    return 1 + (hvp_ms / grad_ms - 1) * min(grad_ms, adam_ms) / (interval * adam_ms)


def hvp_floor(model, x, y, repeats=30):
    """(gradient ms, gradient + HVP ms), CPU time, medians of `repeats`,
    the two alternating, after three warm-up calls (tracing, compilation)."""
    import numpy as np

    rng = np.random.default_rng(0)
    probe = [rng.choice(np.float32([-1, 1]), size=tuple(v.shape)) for v in model.trainable_variables]
    pair = floor_functions(model, x, y, probe)
    times = ([], [])
    for i in range(repeats + 3):
        for fn, out in zip(pair, times):
            start = time.process_time()
            fn()
            if i >= 3:
                out.append(time.process_time() - start)
    return tuple(1000 * statistics.median(t) for t in times)


def measure(args):
    import keras
    import numpy as np

    import keras_optzoo as kz
    from keras_optzoo.tasks import mnist

    backend = keras.backend.backend()
    cases = [c for c in CASES if c[1] in ("Adam", "Hybrid", "AdaHessian", "SophiaH") or hasattr(kz, c[1])]
    (x_all, y_all), _ = mnist.load_embedded()
    peak = {"torch": peak_torch, "tensorflow": peak_tensorflow, "jax": peak_jax}[backend]
    out = []
    for model_name in args.models:
        for size in args.sizes:
            x, y = x_all[:size], y_all[:size]
            steps = -(-size // BATCH)
            models = {label: build(model_name, expr) for label, _, _, expr in cases}
            for model in models.values():  # warm-up: compilation, first-time allocations
                model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
            times = {label: [] for label in models}
            cpu = {label: [] for label in models}
            labels = list(models)
            for r in range(args.rounds):
                order = labels[r % len(labels):] + labels[: r % len(labels)]
                for label in order:
                    start, start_cpu = time.perf_counter(), time.process_time()
                    models[label].fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
                    times[label].append(time.perf_counter() - start)
                    cpu[label].append(time.process_time() - start_cpu)
            adam_cpu_ms = 1000 * statistics.median(cpu[ADAM]) / steps
            memory = {}
            if size == args.sizes[0]:  # neither the floor nor memory depends on the data size
                xb, yb = x[:BATCH], y[:BATCH]
                grad_ms, hvp_ms = hvp_floor(models[ADAM], xb, yb)
                for label, _, interval, _ in cases:
                    to_refresh_step(models[label], xb, yb, interval)
                    extra = peak(models[label], xb, yb)
                    memory[label] = None if extra is None else extra / param_bytes(models[label])
            for label, family, interval, _ in cases:
                out.append({
                    "model": model_name, "images": size, "steps": steps, "label": label, "family": family,
                    "interval": interval, "ms": 1000 * statistics.median(times[label]) / steps,
                    "ratio": statistics.median(times[label]) / statistics.median(times[ADAM]),
                    "spread": [min(a / b for a, b in zip(times[label], times[ADAM])),
                               max(a / b for a, b in zip(times[label], times[ADAM]))],
                    "cpu_ms": 1000 * statistics.median(cpu[label]) / steps,
                    "cpu_ratio": statistics.median(cpu[label]) / statistics.median(cpu[ADAM]),
                    "memory": memory.get(label),
                    "params": param_bytes(models[label]) // 4,
                    # the least a refresh every `interval` steps adds to Adam's step (CPU time);
                    # Sophia-G's Gauss-Newton-Bartlett estimate needs no HVP: no floor
                    "floor": (None if interval is None or family == "SophiaG"
                              else floor(grad_ms, hvp_ms, adam_cpu_ms, interval)),
                    "grad_ms": grad_ms, "hvp_ms": hvp_ms,
                })  # fmt: skip
            del models
            keras.backend.clear_session()
    return {
        "backend": backend, "device": device_kind(backend), "rows": out, "versions": versions(backend),
        "threads": args.threads or "default",
    }  # fmt: skip


def device_kind(backend):
    if backend == "jax":
        import jax

        return jax.devices()[0].platform
    if backend == "torch":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def versions(backend):
    import keras

    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]
    return {"keras": keras.__version__, module: __import__(module).__version__}


# --------------------------------------------------------------------------
# Parent: run the children and write the report.
def verdict(rows, key="ratio"):
    """'met' / 'NOT met' per target interval, with the worst cell."""
    rows = [dict(r, ratio=r[key]) for r in rows if r.get(key) is not None]
    parts = []
    for interval, target in sorted(TARGETS.items(), reverse=True):
        cells = [r for r in rows if r["interval"] == interval]
        if not cells:
            continue
        worst = max(cells, key=lambda r: r["ratio"])
        ok = worst["ratio"] <= target
        parts.append(
            f"interval {interval} <= {target}x Adam: {'met' if ok else 'NOT met'} "
            f"(worst {worst['ratio']:.2f}x, {worst['label']}, {worst['model']}, {worst['images']} images"
            + ("" if ok else f"; {sum(r['ratio'] > target for r in cells)} of {len(cells)} cells over") + ")"
        )
        below = [r for r in cells if (r.get("floor") or 0) > target]
        if below:
            parts[-1] += (f" [the target is below the HVP floor in {len(below)} of {len(cells)} cells: "
                          + ", ".join(sorted({f"{r['model']} {r['floor']:.2f}x" for r in below})) + "]")
    return "; ".join(parts)


def fmt(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}"


def section(res, command):
    backend = res["backend"]
    versions_text = ", ".join(f"{k} {v}" for k, v in res["versions"].items())
    lines = [
        f"<!-- backend:{backend}:start -->",
        f"## {backend} on {res['device'].upper()} ({versions_text})",
        "",
        f"`{command}`, {res.get('date', '')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"threads: {res.get('threads', 'default')}.",
        "",
        f"**Verdict ({backend}, wall time):** {verdict(res['rows'])}.",
        "",
        f"Verdict ({backend}, CPU time): {verdict(res['rows'], 'cpu_ratio')}.",
        "",
        "HVP floor (the backend's autodiff alone, one batch, CPU time, see the script): "
        + "; ".join(sorted({f"{r['model']}: gradient {r['grad_ms']:.2f} ms, gradient + HVP {r['hvp_ms']:.2f} ms"
                            for r in res["rows"] if r.get("grad_ms") is not None})) + ".",
        "",
        "| model | images | optimizer | ms/step | x Adam | per-round range | CPU ms/step | CPU x Adam "
        "| HVP floor x Adam | peak extra B/param B (refresh step) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['model']} | {r['images']} | {r['label']} | {r['ms']:.2f} | {r['ratio']:.2f} "
            f"| {r['spread'][0]:.2f}-{r['spread'][1]:.2f} | {fmt(r.get('cpu_ms'))} | {fmt(r.get('cpu_ratio'))} "
            f"| {fmt(r.get('floor'))} | {fmt(r['memory'], 1)} |"
        )
    lines += ["", f"<!-- backend:{backend}:end -->"]
    return "\n".join(lines)


HEADER = """# Second-order optimizers: whole training step relative to Adam

Generated by `benchmarks/second_order_cost.py` (see its docstring for the
method: whole `fit` epochs, round-robin in one process per backend, medians,
ratios to Adam in the same process; memory as bytes per parameter byte).
Targets (issue 14): at `hessian_update_interval` 10 at most 1.1x Adam's
step, at interval 1 at most 2.0x. Each backend's section is replaced when
the script runs that backend; the notes outside the sections are kept.
"""


def write_report(path, results, command):
    text = open(path).read() if os.path.exists(path) else HEADER
    if "<!-- backend:" not in text and not text.startswith(HEADER.splitlines()[0]):
        text = HEADER  # an old, hand-made file: start over
    for res in results:
        start, end = f"<!-- backend:{res['backend']}:start -->", f"<!-- backend:{res['backend']}:end -->"
        new = section(res, command)
        if start in text and end in text:
            text = text[: text.index(start)] + new + text[text.index(end) + len(end):]
        else:
            marker = "<!-- notes -->"
            if marker in text:
                text = text.replace(marker, new + "\n\n" + marker)
            else:
                text = text.rstrip("\n") + "\n\n" + new + "\n"
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sizes", default=None, help="numbers of training images, comma-separated (2048,8192)")
    parser.add_argument("--rounds", type=int, default=None, help="timed epochs per case (5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads per backend (OMP/torch, TensorFlow intra-op, XLA); default: the library's own")
    parser.add_argument("--quick", action="store_true", help="1,024 images, 3 rounds (a smoke run)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "second_order_cost.md"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = ("1024", 3) if args.quick else ("2048,8192", 5)
    args.sizes = args.sizes or quick[0]
    args.rounds = args.rounds or quick[1]
    args.models = [m.strip() for m in args.models.split(",")]
    if any(m not in MODELS for m in args.models):
        parser.error(f"--models: choose from {', '.join(MODELS)}")
    try:
        args.sizes = [int(s) for s in str(args.sizes).split(",")]
    except ValueError:
        parser.error("--sizes: comma-separated integers such as 2048,8192")
    if any(s < BATCH for s in args.sizes) or args.rounds < 1:
        parser.error(f"--sizes must be >= {BATCH} and --rounds >= 1")
    if args.child:
        print("RESULT " + json.dumps(measure(args)))
        return 0
    command = "python benchmarks/second_order_cost.py " + " ".join(a for a in (argv or sys.argv[1:]))
    results = []
    for backend in [b.strip() for b in args.backends.split(",")]:
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
        if args.threads:
            n = str(args.threads)
            env.update(OMP_NUM_THREADS=n, TF_NUM_INTRAOP_THREADS=n, TF_NUM_INTEROP_THREADS=n)
            if args.threads == 1:  # XLA's CPU client: no Eigen thread pool
                env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        cmd = [sys.executable, os.path.abspath(__file__), "--child"] + list(argv if argv is not None else sys.argv[1:])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
            print(f"{backend}: benchmark failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        res = json.loads(line[len("RESULT "):])
        res["date"] = time.strftime("%Y-%m-%d %H:%M")
        results.append(res)
        print(section(res, command.strip()), flush=True)
    if args.out:
        write_report(args.out, results, command.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
