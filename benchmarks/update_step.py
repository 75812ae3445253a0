"""Time and memory of one optimizer update, ours against the native libraries.

    python benchmarks/update_step.py [--backends tensorflow,jax,torch] [--sizes 1M,4M,16M]
                                     [--optimizers momentum,adagrad,...] [--repeats 15]
                                     [--no-e2e] [--out docs/performance.md]

Each backend runs in its own process (Keras fixes its backend at import). For
every size N the parameters are 8 float32 tensors of mixed rank (two dense
kernels, two 3x3 conv kernels, an embedding table, two biases and a scale
vector) that add up to about N. One "update" is `optimizer.apply(grads,
variables)` with fixed gradients, the way `fit()` calls it:

- JAX: `jax.jit(optimizer.stateless_apply)` with the variables donated (as
  Keras's JAX trainer does), against the same for the Keras built-in and a
  jitted, donated `optax` update + `optax.apply_updates`;
- TensorFlow: `tf.function(optimizer.apply)` with and without `jit_compile`
  (XLA), against the Keras built-in in the same mode;
- torch: eager `optimizer.apply` under `torch.no_grad()`, against the Keras
  built-in and `torch.optim` with `foreach=False` (for-loop), `foreach=True`
  and `fused=True` where torch has a fused kernel.

Reported: the median of `--repeats` timed updates after warm-up, the ratios
ours / best native and ours / Keras built-in, the optimizer state in bytes
per parameter byte, and the peak extra memory of one update per parameter
byte (CPU: growth of the process's peak RSS, reset through
/proc/self/clear_refs; GPU: the backend's peak device-memory counter). All
numbers of a table come from one run of this script, so the ratios compare
measurements taken minutes apart on the same machine.

`--e2e` (default on) adds seconds per epoch of the MNIST MLP (784-500-10,
8000 embedded images, batch 128; median of epochs 2-6, the first compiles)
for each optimizer against the Keras built-in.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

FIRST_ORDER = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "amsgrad", "adamw"]
# The optimizers the issue sets targets for.
TARGETED = {"momentum", "adagrad", "rmsprop", "adam", "amsgrad", "adamw"}
LR = 1e-3


# --------------------------------------------------------------------------
# Problem: 8 tensors of mixed shapes adding up to about n parameters.
def shapes_for(n):
    def rows(fraction, width):
        return max(1, round(fraction * n / width))

    return [
        (rows(0.30, 1024), 1024),  # dense kernel
        (rows(0.20, 512), 512),  # dense kernel
        (3, 3, rows(0.20, 9 * 256), 256),  # conv kernel
        (3, 3, 64, rows(0.10, 9 * 64)),  # conv kernel
        (rows(0.18, 128), 128),  # embedding table
        (max(1, round(0.01 * n)),),  # bias
        (max(1, round(0.005 * n)),),  # bias
        (max(1, round(0.005 * n)),),  # scale
    ]


def parse_size(text):
    text = text.strip().upper()
    scale = {"K": 1e3, "M": 1e6}.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in "KM" else text
    try:
        value = int(float(number) * scale)
    except ValueError:
        value = 0
    if value < 100:
        raise argparse.ArgumentTypeError(f"--sizes: {text!r} is not a size such as 4M, 500K or 20000 (>= 100)")
    return value


def label(n):
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}K"


# --------------------------------------------------------------------------
# Memory probes.
def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def peak_extra_cpu(run_once):
    """Bytes by which one call of run_once raises the process's peak RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
    except OSError:
        return None
    before = _rss_kib("VmRSS")
    run_once()
    peak = _rss_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak - before) * 1024


class Case:
    """One way of running the update: `run()` does one update and waits for
    the device; `state` is bytes of state per parameter byte; `peak()` is
    the extra bytes one update needs."""

    def __init__(self, run, state, peak):
        self.run, self.state, self.peak = run, state, peak


def timed(cases, repeats, warmup):
    """(median ms, state, peak) of each case, timed round-robin so that the
    machine's drift hits every case alike."""
    for case in cases.values():
        for _ in range(warmup):
            case.run()
    times = {key: [] for key in cases}
    for _ in range(repeats):
        for key, case in cases.items():
            start = time.perf_counter()
            case.run()
            times[key].append(time.perf_counter() - start)
    return {key: (1000 * statistics.median(times[key]), case.state, case.peak()) for key, case in cases.items()}


# --------------------------------------------------------------------------
# Child: everything below runs with KERAS_BACKEND fixed.
def make_keras(name, builtin):
    import keras

    import keras_optzoo as kz

    if builtin:
        k = keras.optimizers
        return {
            "sgd": lambda: k.SGD(LR),
            "momentum": lambda: k.SGD(LR, momentum=0.9),
            "nesterov": lambda: k.SGD(LR, momentum=0.9, nesterov=True),
            "adagrad": lambda: k.Adagrad(LR, initial_accumulator_value=0.0),
            "rmsprop": lambda: k.RMSprop(LR),
            "adam": lambda: k.Adam(LR),
            "amsgrad": lambda: k.Adam(LR, amsgrad=True),
            "adamw": lambda: k.AdamW(LR),
        }[name]()
    return type(kz.optimizers.get(name))(learning_rate=LR)


def state_ratio(optimizer, param_bytes):
    import numpy as np

    state = sum(int(np.prod(v.shape)) * 4 for v in optimizer.variables if len(v.shape) > 0)
    return state / param_bytes


class Problem:
    def __init__(self, n, seed=0):
        import numpy as np

        rng = np.random.default_rng(seed)
        self.shapes = shapes_for(n)
        self.params = [rng.standard_normal(s).astype("float32") for s in self.shapes]
        self.grads = [rng.standard_normal(s).astype("float32") * 1e-2 for s in self.shapes]
        self.size = sum(p.size for p in self.params)
        self.bytes = 4 * self.size


def keras_variables(problem):
    import keras

    return [keras.Variable(p, name=f"p{i}") for i, p in enumerate(problem.params)]


def bench_jax(problem, names, repeats, warmup, gpu):
    import jax
    import optax

    import keras

    grads = [jax.numpy.asarray(g) for g in problem.grads]

    def peak(run):
        def measure():
            if not gpu:
                return peak_extra_cpu(run)
            before = (jax.devices()[0].memory_stats() or {}).get("bytes_in_use")
            run()
            after = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
            return None if before is None or after is None else max(0, after - before)

        return measure

    def keras_case(name, builtin):
        variables = keras_variables(problem)
        opt = make_keras(name, builtin)
        opt.build(variables)

        def update(optimizer_variables, trainable_variables, grads):
            # Outputs in the order of the donated inputs: JAX pairs donated
            # buffers with outputs by position among equal shapes, so the
            # other order would make XLA copy every variable.
            new_trainable, new_optimizer = opt.stateless_apply(optimizer_variables, grads, trainable_variables)
            return new_optimizer, new_trainable

        step = jax.jit(update, donate_argnums=(0, 1))
        box = {"t": [v.value for v in variables], "o": [v.value for v in opt.variables]}

        def run():
            box["o"], box["t"] = step(box["o"], box["t"], grads)
            jax.block_until_ready(box)

        return Case(run, state_ratio(opt, problem.bytes), peak(run))

    def optax_case(name):
        tx = {
            "sgd": lambda: optax.sgd(LR),
            "momentum": lambda: optax.sgd(LR, momentum=0.9),
            "nesterov": lambda: optax.sgd(LR, momentum=0.9, nesterov=True),
            "adagrad": lambda: optax.adagrad(LR, initial_accumulator_value=0.0, eps=1e-7),
            "rmsprop": lambda: optax.rmsprop(LR, decay=0.9, eps=1e-7),
            "adam": lambda: optax.adam(LR, eps=1e-7),
            "amsgrad": lambda: optax.amsgrad(LR, eps=1e-7),
            "adamw": lambda: optax.adamw(LR, eps=1e-7, weight_decay=0.004),
        }[name]()
        params = [jax.numpy.asarray(p) for p in problem.params]
        box = {"p": params, "s": tx.init(params)}

        def update(params, state, grads):
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        step = jax.jit(update, donate_argnums=(0, 1))

        def run():
            box["p"], box["s"] = step(box["p"], box["s"], grads)
            jax.block_until_ready(box)

        leaves = [x for x in jax.tree_util.tree_leaves(box["s"]) if getattr(x, "ndim", 0) > 0]
        state = sum(x.size * x.dtype.itemsize for x in leaves) / problem.bytes
        return Case(run, state, peak(run))

    rows = []
    for name in names:
        cases = {"ours": keras_case(name, False), "keras": keras_case(name, True), "optax": optax_case(name)}
        t = timed(cases, repeats, warmup)
        rows.append(row(name, "jax", t.pop("ours"), t.pop("keras"), t, problem))
        del cases
    keras.backend.clear_session()
    return rows


def bench_tensorflow(problem, names, repeats, warmup, gpu):
    import tensorflow as tf

    import keras

    grads = [tf.constant(g) for g in problem.grads]

    def peak(run):
        def measure():
            if not gpu:
                return peak_extra_cpu(run)
            tf.config.experimental.reset_memory_stats("GPU:0")
            before = tf.config.experimental.get_memory_info("GPU:0")["current"]
            run()
            return max(0, tf.config.experimental.get_memory_info("GPU:0")["peak"] - before)

        return measure

    def case(name, builtin, xla):
        variables = keras_variables(problem)
        opt = make_keras(name, builtin)
        opt.build(variables)
        step = tf.function(lambda: opt.apply(grads, variables), jit_compile=xla)

        def run():
            step()
            variables[-1].numpy()  # waits for the device

        return Case(run, state_ratio(opt, problem.bytes), peak(run))

    rows = []
    for name in names:
        for xla in (False, True):
            t = timed({"ours": case(name, False, xla), "keras": case(name, True, xla)}, repeats, warmup)
            mode = "tensorflow (XLA)" if xla else "tensorflow (tf.function)"
            rows.append(row(name, mode, t["ours"], t["keras"], {}, problem))
    keras.backend.clear_session()
    return rows


def bench_torch(problem, names, repeats, warmup, gpu):
    import torch

    import keras

    device = "cuda" if gpu else "cpu"
    grads = [torch.as_tensor(g, device=device) for g in problem.grads]

    def sync():
        if gpu:
            torch.cuda.synchronize()

    def peak(run):
        def measure():
            if not gpu:
                return peak_extra_cpu(run)
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
            run()
            return max(0, torch.cuda.max_memory_allocated() - before)

        return measure

    def keras_case(name, builtin):
        variables = keras_variables(problem)
        opt = make_keras(name, builtin)
        opt.build(variables)

        def run():
            with torch.no_grad():
                opt.apply(grads, variables)
            sync()

        return Case(run, state_ratio(opt, problem.bytes), peak(run))

    def torch_case(name, variant):
        params = [torch.nn.Parameter(torch.as_tensor(p, device=device).clone()) for p in problem.params]
        for p, g in zip(params, grads):
            p.grad = g
        kwargs = {"fused": True} if variant == "fused" else {"foreach": variant == "foreach"}
        o = torch.optim
        opt = {
            "sgd": lambda: o.SGD(params, LR, **kwargs),
            "momentum": lambda: o.SGD(params, LR, momentum=0.9, **kwargs),
            "nesterov": lambda: o.SGD(params, LR, momentum=0.9, nesterov=True, **kwargs),
            "adagrad": lambda: o.Adagrad(params, LR, eps=1e-7, **kwargs),
            "rmsprop": lambda: o.RMSprop(params, LR, alpha=0.9, eps=1e-7, **kwargs),
            "adam": lambda: o.Adam(params, LR, eps=1e-7, **kwargs),
            "amsgrad": lambda: o.Adam(params, LR, eps=1e-7, amsgrad=True, **kwargs),
            "adamw": lambda: o.AdamW(params, LR, eps=1e-7, weight_decay=0.004, **kwargs),
        }[name]()

        def run():
            opt.step()
            sync()

        run()  # creates the state
        state = sum(
            t.numel() * t.element_size()
            for s in opt.state.values()
            for t in s.values()
            if torch.is_tensor(t) and t.dim() > 0
        )
        return Case(run, state / problem.bytes, peak(run))

    rows = []
    for name in names:
        cases = {"ours": keras_case(name, False), "keras": keras_case(name, True)}
        for variant in ("for-loop", "foreach", "fused"):
            try:
                cases[variant] = torch_case(name, variant)
            except (RuntimeError, TypeError, ValueError):
                pass  # no fused kernel for this algorithm (RMSprop) or device
        t = timed(cases, repeats, warmup)
        rows.append(row(name, "torch", t.pop("ours"), t.pop("keras"), t, problem))
        del cases
    keras.backend.clear_session()
    return rows


def row(name, backend, ours, builtin, natives, problem):
    out = {
        "optimizer": name,
        "backend": backend,
        "params": problem.size,
        "ours_ms": ours[0],
        "keras_ms": builtin[0],
        "ours_state": ours[1],
        "keras_state": builtin[1],
        "ours_peak": None if ours[2] is None else ours[2] / problem.bytes,
        "keras_peak": None if builtin[2] is None else builtin[2] / problem.bytes,
        "native": {k: {"ms": v[0], "state": v[1]} for k, v in natives.items()},
    }
    if natives:
        best = min(natives, key=lambda k: natives[k][0])
        out["best_native"] = best
        out["best_native_ms"] = natives[best][0]
    return out


def end_to_end(names, epochs=6):
    import keras

    from keras_optzoo.tasks import mnist

    (x, y), _ = mnist.load_embedded()
    # A throw-away fit first, so that the process's first-time costs (thread
    # pools, allocator growth) do not land on whichever optimizer runs first.
    warm = mnist.mlp(hidden_activation="relu")
    warm.compile(optimizer="sgd", loss=mnist.LOSS)
    warm.fit(x, y, batch_size=128, epochs=2, verbose=0)
    out = {}
    for name in names:
        for builtin in (False, True):
            keras.utils.set_random_seed(0)
            model = mnist.mlp(hidden_activation="relu")
            model.compile(optimizer=make_keras(name, builtin), loss=mnist.LOSS)
            times = []

            class Timer(keras.callbacks.Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    self.start = time.perf_counter()

                def on_epoch_end(self, epoch, logs=None):
                    times.append(time.perf_counter() - self.start)

            model.fit(x, y, batch_size=128, epochs=epochs, shuffle=False, verbose=0, callbacks=[Timer()])
            out.setdefault(name, {})["keras" if builtin else "ours"] = statistics.median(times[1:])
    return out


def child(args):
    import keras

    backend = keras.backend.backend()
    gpu = device_kind(backend) == "gpu"
    bench = {"jax": bench_jax, "tensorflow": bench_tensorflow, "torch": bench_torch}[backend]
    rows = []
    for n in args.sizes:
        rows += bench(Problem(n), args.optimizers, args.repeats, args.warmup, gpu)
    result = {"backend": backend, "device": device_kind(backend), "rows": rows, "versions": versions(backend)}
    if args.e2e:
        result["e2e"] = end_to_end(args.optimizers)
    return result


def device_kind(backend):
    if backend == "jax":
        import jax

        return "gpu" if jax.devices()[0].platform == "gpu" else "cpu"
    if backend == "torch":
        import torch

        return "gpu" if torch.cuda.is_available() else "cpu"
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def versions(backend):
    import keras

    out = {"keras": keras.__version__}
    if backend == "jax":
        import jax
        import optax

        out.update(jax=jax.__version__, optax=optax.__version__)
    elif backend == "torch":
        import torch

        out["torch"] = torch.__version__
    else:
        import tensorflow as tf

        out["tensorflow"] = tf.__version__
    return out


# --------------------------------------------------------------------------
# Parent: run the children and write the report.
def fmt(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}"


def target_met(r):
    """The issue's target for this row, as (text, met) or None."""
    if r["optimizer"] not in TARGETED:
        return None
    ours, keras_ms = r["ours_ms"], r["keras_ms"]
    if r["backend"] == "jax":
        ratio = ours / r["native"]["optax"]["ms"]
        return f"<= 1.1x optax: {ratio:.2f}x", ratio <= 1.1
    if r["backend"].startswith("tensorflow"):
        ratio = ours / keras_ms
        return f"<= 1.0x Keras: {ratio:.2f}x", ratio <= 1.0
    ratio = ours / r["best_native_ms"]
    text = f"<= 1.5x {r['best_native']}: {ratio:.2f}x"
    text += f"; <= 1.0x Keras: {ours / keras_ms:.2f}x"
    met = ratio <= 1.5 and ours <= keras_ms
    if keras_ms > 5 * r["best_native_ms"]:  # the Keras built-in is itself far off
        text += f"; >= 3x faster than Keras: {keras_ms / ours:.1f}x"
        met = met and keras_ms / ours >= 3
    return text, met


def report(results, args):
    lines = [
        "# Update-step performance",
        "",
        "Generated by `python benchmarks/update_step.py "
        + " ".join(a for a in sys.argv[1:] if a != "--child")
        + "` (see its docstring for the method).",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, {platform.python_implementation()} "
        f"{platform.python_version()}.",
        "",
    ]
    summary = []
    for res in results:
        checked = [(r, target_met(r)) for r in res["rows"] if target_met(r) is not None]
        at_4m = [(r, t) for r, t in checked if abs(r["params"] - 4e6) < 1e5] or checked
        missed = [f"{r['optimizer']} ({r['backend']}, {label(r['params'])}: {t[0]})" for r, t in checked if not t[1]]
        summary.append(
            f"- {res['backend']} ({res['device']}): targets met in {sum(t[1] for _, t in at_4m)} of {len(at_4m)} "
            f"rows at 4M, {sum(t[1] for _, t in checked)} of {len(checked)} at all sizes."
            + (f" Not met: {'; '.join(missed)}." if missed else "")
        )
    lines += ["Targets (issue 8): JAX <= 1.1x optax; TensorFlow <= 1.0x the Keras built-in in each mode; torch <= 1.5x "
              "the best torch.optim variant and <= 1.0x the Keras built-in, and >= 3x faster than the Keras built-in "
              "where that is > 5x the best torch.optim.", ""] + summary + [""]
    for res in results:
        versions_text = ", ".join(f"{k} {v}" for k, v in res["versions"].items())
        lines += [f"## {res['backend']} on {res['device'].upper()} ({versions_text})", ""]
        lines += [
            "| optimizer | backend | params | ours ms | Keras ms | native ms (best) | ours / best native "
            "| ours / Keras | state B/param B (ours, Keras) | peak extra B/param B (ours, Keras) | target |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["rows"]:
            natives = ", ".join(f"{k} {fmt(v['ms'])}" for k, v in r["native"].items()) or "-"
            best = r.get("best_native_ms")
            target = target_met(r)
            target_text = "-" if target is None else f"{'met' if target[1] else 'NOT met'} ({target[0]})"
            lines.append(
                f"| {r['optimizer']} | {r['backend']} | {label(r['params'])} | {fmt(r['ours_ms'])} "
                f"| {fmt(r['keras_ms'])} | {natives} | {fmt(None if best is None else r['ours_ms'] / best)} "
                f"| {fmt(r['ours_ms'] / r['keras_ms'])} | {fmt(r['ours_state'], 1)}, {fmt(r['keras_state'], 1)} "
                f"| {fmt(r['ours_peak'], 1)}, {fmt(r['keras_peak'], 1)} | {target_text} |"
            )
        lines.append("")
        if "e2e" in res:
            lines += [
                f"End to end, {res['backend']}: seconds per epoch, MNIST MLP 784-500-10 (ReLU), 8000 images, "
                "batch 128, median of epochs 2-6:",
                "",
                "| optimizer | ours s/epoch | Keras s/epoch | ours / Keras |",
                "|---|---|---|---|",
            ]
            for name, t in res["e2e"].items():
                lines.append(f"| {name} | {t['ours']:.3f} | {t['keras']:.3f} | {t['ours'] / t['keras']:.2f} |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--sizes", default="1M,4M,16M")
    parser.add_argument("--optimizers", default=",".join(FIRST_ORDER))
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--e2e", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "docs", "performance.md"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.sizes = [parse_size(s) for s in args.sizes.split(",")]
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    args.optimizers = [o.strip() for o in args.optimizers.split(",")]
    unknown = [o for o in args.optimizers if o not in FIRST_ORDER]
    if unknown:
        parser.error(f"--optimizers: unknown {unknown}; choose from {FIRST_ORDER}")
    backends = [b.strip() for b in args.backends.split(",")]
    bad = [b for b in backends if b not in ("tensorflow", "jax", "torch")]
    if bad:
        parser.error(f"--backends: unknown {bad}; choose from tensorflow, jax, torch")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return 0
    results = []
    for backend in backends:
        env = dict(os.environ, KERAS_BACKEND=backend)
        cmd = [sys.executable, os.path.abspath(__file__), "--child"] + (argv if argv is not None else sys.argv[1:])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not found:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
            print(f"{backend}: benchmark failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        results.append(json.loads(found[-1][len("RESULT ") :]))
        print(f"{backend}: done", file=sys.stderr)
    text = report(results, args)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
