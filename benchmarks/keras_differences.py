"""How far ours moves from the Keras built-in of the same algorithm, for the
README's "Coming from keras.optimizers" table.

    KERAS_BACKEND=jax python benchmarks/keras_differences.py

Two models from the same initial weights, the same batches (no shuffling),
lr 1e-2 for every optimizer, float32:

- Embedding: vocabulary 2,000, dimension 16, sequences of 16 Zipf-distributed
  tokens (a few rows frequent, most hit rarely), mean pooling, a sigmoid unit;
  1,024 sequences, batch 32.
- Dense: an MLP 784-128-10 (ReLU) on 2,048 of the real MNIST images in
  keras_optzoo/tasks/data/mnist (package data), batch 64.

For each algorithm: the largest |w_ours - w_keras| over all weights after one
step and after 2 epochs, with our defaults (the arithmetic of the papers,
torch and optax) and with `keras_compat=True`, and the relative difference of
the final training loss.
"""

import numpy as np

import keras
import keras_optzoo as kz
from keras_optzoo.tasks import mnist

LR = 1e-2
CASES = [
    ("Adam", lambda **k: kz.Adam(LR, **k), lambda: keras.optimizers.Adam(LR)),
    ("AMSGrad", lambda **k: kz.AMSGrad(LR, **k), lambda: keras.optimizers.Adam(LR, amsgrad=True)),
    ("AdamW", lambda **k: kz.AdamW(LR, **k), lambda: keras.optimizers.AdamW(LR)),
    ("Adagrad", lambda **k: kz.Adagrad(LR, **k), lambda: keras.optimizers.Adagrad(LR)),
    ("RMSprop", lambda **k: kz.RMSprop(LR, **k), lambda: keras.optimizers.RMSprop(LR)),
]


def embedding_task():
    rng = np.random.default_rng(0)
    vocab, length, n = 2000, 16, 1024
    x = ((rng.zipf(1.3, size=(n, length)) - 1) % vocab).astype("int32")
    teacher = rng.standard_normal(vocab)
    y = (teacher[x].mean(axis=1) > 0).astype("float32")

    def build():
        keras.utils.set_random_seed(1)
        return keras.Sequential([keras.Input((length,), dtype="int32"), keras.layers.Embedding(vocab, 16),
                                 keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1, activation="sigmoid")])

    return build, x, y, "binary_crossentropy", 32


def dense_task():
    (x, y), _ = mnist.load_embedded()
    x, y = x[:2048], y[:2048]

    def build():
        keras.utils.set_random_seed(1)
        return keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                                 keras.layers.Dense(10, activation="softmax")])

    return build, x, y, "sparse_categorical_crossentropy", 64


def train(task, optimizer, epochs=None):
    build, x, y, loss, batch = task
    model = build()
    model.compile(optimizer=optimizer, loss=loss)
    if epochs is None:  # one step
        model.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, shuffle=False, verbose=0)
        return model.get_weights(), None
    history = model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0)
    return model.get_weights(), history.history["loss"][-1]


def gap(a, b):
    return max(float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(a, b))


def main():
    print(f"backend {keras.backend.backend()}, lr {LR}")
    print("| model | optimizer | max abs diff, 1 step | max abs diff, 2 epochs | final loss, rel. diff | "
          "keras_compat=True, 2 epochs |")
    print("|---|---|---|---|---|---|")
    for model_name, task in (("Embedding", embedding_task()), ("Dense", dense_task())):
        for name, ours, builtin in CASES:
            step = gap(train(task, ours())[0], train(task, builtin())[0])
            w_keras, loss_keras = train(task, builtin(), epochs=2)
            w_ours, loss_ours = train(task, ours(), epochs=2)
            w_compat, _ = train(task, ours(keras_compat=True), epochs=2)
            rel = abs(loss_ours - loss_keras) / loss_keras
            print(f"| {model_name} | {name} | {step:.2g} | {gap(w_ours, w_keras):.2g} | {rel:.1%} | "
                  f"{gap(w_compat, w_keras):.1g} |", flush=True)


if __name__ == "__main__":
    main()
