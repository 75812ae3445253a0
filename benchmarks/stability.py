"""Is a second-order default stable on CNNs it was not tuned on? (issue 28, item 3)

    KERAS_BACKEND=torch python benchmarks/stability.py [--seeds 5] [--images 2000] [--epochs 3]

Three MNIST CNNs with BatchNormalization: the benchmark's (`tasks.mnist.cnn()`,
16/32 filters), the same with Dropout(0.25) after each convolution block
("conv-dropout", the shape of the user trial that found AdaHessian's spikes),
and a wider one (`cnn(filters=32)`, 32/64 filters). Each optimizer trains
each model from the same initial weights and batch order per seed (real
MNIST, the first `--images` of the embedded split, batch 64, `--epochs`
epochs, through `with_curvature` + `fit`). Printed per model and optimizer:
the largest single-batch training loss in the first 20 steps (recovered from
the running mean `fit` logs: L_k = k * mean_k - (k - 1) * mean_(k-1), exact
for equal batches) and the final epoch's training loss, per seed, next to
`keras.optimizers.Adam()`'s. The criterion (issue 28): max of the first 20
batch losses <= 2 x Adam's max, and final loss <= Adam's, on every seed.
"""

import argparse
import time

import keras
import numpy as np

import keras_optzoo as kz
from keras_optzoo.tasks import mnist

STEPS = 20


def conv_dropout_cnn(rate=0.25):
    layers = [keras.Input((784,)), keras.layers.Reshape((28, 28, 1))]
    for width in (16, 32):
        layers += [
            keras.layers.Conv2D(width, 3, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
            keras.layers.Dropout(rate),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, "softmax")]
    return keras.Sequential(layers, name="conv_dropout_cnn")


MODELS = {"benchmark": mnist.cnn, "conv-dropout": conv_dropout_cnn, "wide": lambda: mnist.cnn(filters=32)}
OPTIMIZERS = {"Adam()": lambda: keras.optimizers.Adam(), "AdaHessian()": kz.AdaHessian, "Newton()": kz.Newton}


class BatchLosses(keras.callbacks.Callback):
    """The single-batch losses of the first STEPS steps, from fit's running mean."""

    def on_train_begin(self, logs=None):
        self.means, self.losses = [], []

    def on_train_batch_end(self, batch, logs=None):
        if len(self.losses) < STEPS and batch == len(self.means):
            mean = float(logs["loss"])
            self.losses.append((batch + 1) * mean - batch * (self.means[-1] if self.means else 0.0))
            self.means.append(mean)


def run(make_model, make_optimizer, x, y, epochs, seed):
    keras.utils.set_random_seed(seed)
    model = kz.with_curvature(make_model())
    model.compile(optimizer=make_optimizer(), loss=mnist.LOSS)
    record = BatchLosses()
    history = model.fit(x, y, batch_size=64, epochs=epochs, shuffle=True, verbose=0, callbacks=[record])
    return max(record.losses), history.history["loss"][-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--optimizers", default=";".join(OPTIMIZERS),
                        help="';'-separated; Adam() is always run first (the anchor); other settings as "
                        "keras_optzoo expressions, e.g. 'AdaHessian(0.05)'")  # fmt: skip
    args = parser.parse_args(argv)
    (x, y), _ = mnist.load_embedded()
    x, y = x[: args.images], y[: args.images]
    names = ["Adam()"] + [n for n in args.optimizers.replace(";", "|").split("|") if n != "Adam()"]
    print(f"backend {keras.backend.backend()}, keras {keras.__version__}, {len(x)} images, {args.epochs} epochs, "
          f"batch 64, seeds 0..{args.seeds - 1}")  # fmt: skip
    print("| model | optimizer | max batch loss, first 20 steps (per seed) | final loss (per seed) | spikes ok | final ok |")
    print("|---|---|---|---|---|---|")
    for model_name in args.models.split(","):
        adam = None
        for name in names:
            start = time.perf_counter()
            make = OPTIMIZERS.get(name) or (lambda name=name: eval("kz." + name))  # noqa: S307 (a candidate setting)
            runs = [run(MODELS[model_name], make, x, y, args.epochs, s) for s in range(args.seeds)]
            peaks, finals = np.array([r[0] for r in runs]), np.array([r[1] for r in runs])
            if adam is None:
                adam = peaks, finals
            spikes = int(np.sum(peaks <= 2 * adam[0]))  # same weights and batches per seed
            final = int(np.sum(finals <= adam[1]))
            print(f"| {model_name} | {name} | {' '.join(f'{p:.2f}' for p in peaks)} | "
                  f"{' '.join(f'{f:.3f}' for f in finals)} | {spikes}/{args.seeds} | {final}/{args.seeds} |"
                  f" <!-- {time.perf_counter() - start:.0f} s -->", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
