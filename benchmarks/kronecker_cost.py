"""What SOAP and Shampoo cost per `fit` step, against AdamW in the same process.

    KERAS_BACKEND=jax python benchmarks/kronecker_cost.py [--images 2048] [--epochs 2] [--models MLP,CNN]
                                                          [--repeats 1]

For each model (the MNIST MLP 784-500-10 and the small BatchNorm CNN of
`keras_optzoo.tasks.mnist`), batch 64, every optimizer trains one warm-up
epoch (tracing, compilation, the first eigendecompositions) and then
`--epochs` timed epochs; the table gives the mean step's wall and CPU time
and their ratio to `keras.optimizers.AdamW()`'s (with `--repeats`, rounds
over all optimizers; the medians of the times and of each round's ratios;
on torch also two frequency-100 rows with `fused=False`: the keras.ops code
that torch's SOAP/Shampoo kernels replace). The refresh step's own cost is
measured apart: one `keras.ops.eigh` (SOAP's first step, every Shampoo
refresh) and one `keras.ops.qr` (SOAP's later refreshes) of a random
symmetric matrix of each factor's size, summed over the factors each
optimizer keeps (SOAP and Shampoo: one per kernel dimension; Shampoo with
`merge_dims=True`: after merging small dimensions, so the MLP's 500 x 10
kernel is one 5,000-wide factor), medians of 3 after one warm-up call.

The per-step floor of both algorithms is their matrix work: for a d_in x
d_out kernel, a factor update of (d_in^2 d_out + d_in d_out^2) multiply-adds
each step, and SOAP three rotations of the same size; the columns "factor
work / forward-backward" give that count against the model's own forward
and backward pass (3 x batch x parameters multiply-adds for a Dense layer).
"""

import argparse
import statistics
import time

import numpy as np

import keras

import keras_optzoo as kz
from keras_optzoo.tasks import mnist

MODELS = {"MLP": lambda: mnist.mlp("relu"), "CNN": mnist.cnn}
OPTIMIZERS = {
    "AdamW()": lambda: keras.optimizers.AdamW(),
    "SOAP(frequency 10)": lambda: kz.SOAP(precondition_frequency=10),
    "SOAP(frequency 100)": lambda: kz.SOAP(precondition_frequency=100),
    "Shampoo(frequency 10)": lambda: kz.Shampoo(precondition_frequency=10),
    "Shampoo(frequency 100)": lambda: kz.Shampoo(precondition_frequency=100),
    "Shampoo(merge_dims=True)": lambda: kz.Shampoo(merge_dims=True),
}
# torch runs both as plain torch calls (backend/torch/kernels_kronecker.py);
# fused=False is the keras.ops code the kernels replace, timed for the gain.
TORCH_ONLY = {
    "SOAP(frequency 100, fused=False)": lambda: kz.SOAP(precondition_frequency=100, fused=False),
    "Shampoo(frequency 100, fused=False)": lambda: kz.Shampoo(precondition_frequency=100, fused=False),
}


class _Clock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch, logs=None):
        wall, cpu = self._start
        self.epochs.append((time.perf_counter() - wall, time.process_time() - cpu))


def step_times(make_model, make_optimizer, x, y, epochs, batch):
    keras.utils.set_random_seed(0)
    model = make_model()
    model.compile(optimizer=make_optimizer(), loss=mnist.LOSS)
    clock = _Clock()
    model.fit(x, y, batch_size=batch, epochs=1 + epochs, shuffle=False, verbose=0, callbacks=[clock])
    steps = int(np.ceil(len(x) / batch)) * epochs
    timed = clock.epochs[1:]
    return sum(w for w, _ in timed) / steps, sum(c for _, c in timed) / steps


def _median_time(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def factor_sizes(model, optimizer):
    """The widths of the factors `optimizer` keeps for `model` (built, not stepped)."""
    optimizer.build(model.trainable_weights)
    return sorted((int(v.shape[0]) for v in optimizer.variables if "_factor_" in v.path), reverse=True)


def refresh_cost(sizes):
    """(eigh seconds, qr seconds) summed over factors of these widths."""
    rng = np.random.default_rng(0)
    eigh = qr = 0.0
    for n in sizes:
        a = rng.standard_normal((n, n)).astype("float32")
        a = keras.ops.convert_to_tensor(a @ a.T / n)
        eigh += _median_time(lambda a=a: keras.ops.eigh(a)[1])
        qr += _median_time(lambda a=a: keras.ops.qr(a)[0])
    return eigh, qr


def factor_work(model, batch):
    """Multiply-adds of one step's factor updates, against forward + backward."""
    work = forward_backward = 0
    for w in model.trainable_weights:
        size = int(np.prod(w.shape))
        if len(w.shape) >= 2:
            work += sum(n * size for n in w.shape)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            forward_backward += 3 * batch * int(np.prod(layer.kernel.shape))
        elif isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape
            forward_backward += 3 * batch * int(np.prod(out[1:])) * int(np.prod(layer.kernel.shape[:-1]))
    return work, forward_backward


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds over all optimizers; medians of the times and of the per-round ratios")
    args = parser.parse_args(argv)
    (x, y), _ = mnist.load_embedded()
    x, y = x[: args.images], y[: args.images]
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, {len(x)} images, batch {args.batch}, "
          f"{args.epochs} timed epochs after one warm-up")
    for model_name in args.models.split(","):
        model = MODELS[model_name]()
        work, fb = factor_work(model, args.batch)
        print(f"\n### {model_name}: SOAP's factor update {work / 1e6:.1f}M multiply-adds a step = {work / fb:.1f}x "
              f"the forward-backward ({fb / 1e6:.1f}M)\n")
        for name, make in (("SOAP()", kz.SOAP), ("Shampoo()", kz.Shampoo),
                           ("Shampoo(merge_dims=True)", lambda: kz.Shampoo(merge_dims=True))):
            sizes = factor_sizes(MODELS[model_name](), make())
            eigh, qr = refresh_cost(sizes)
            print(f"- {name} factors {sizes}: one refresh = eigh {1e3 * eigh:.0f} ms of each (QR {1e3 * qr:.0f} ms)")
        print()
        print(f"({args.repeats} round(s); medians)\n")
        print("| optimizer | wall ms/step | CPU ms/step | wall x AdamW | CPU x AdamW |")
        print("|---|---|---|---|---|")
        extra = TORCH_ONLY if keras.backend.backend() == "torch" else {}
        candidates = {**OPTIMIZERS, **extra}
        rounds = {name: [] for name in candidates}
        for _ in range(args.repeats):  # round-robin, so that a slow spell of the machine hits every row
            for name, make in candidates.items():
                rounds[name].append(step_times(MODELS[model_name], make, x, y, args.epochs, args.batch))
        anchor = rounds["AdamW()"]
        for name, times in rounds.items():
            wall, cpu = (statistics.median(t[i] for t in times) for i in (0, 1))
            ratios = [(t[0] / a[0], t[1] / a[1]) for t, a in zip(times, anchor)]
            print(f"| {name} | {1e3 * wall:.2f} | {1e3 * cpu:.2f} | {statistics.median(r[0] for r in ratios):.2f} "
                  f"| {statistics.median(r[1] for r in ratios):.2f} |", flush=True)


if __name__ == "__main__":
    main()
