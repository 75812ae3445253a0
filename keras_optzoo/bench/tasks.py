"""The benchmark's three tasks and their train / validation / test splits.

The validation split is carved out of the training data (a fixed 20 %), so
that the tuned protocol picks learning rates without looking at the test set;
`Split.without_test()` is what the selection phase receives.
"""

from typing import Callable, NamedTuple, Optional

import numpy as np

VALIDATION_FRACTION = 0.2


class Split(NamedTuple):
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: Optional[np.ndarray]
    y_test: Optional[np.ndarray]
    graph: object = None  # Karate: the training graph (validation and test edges removed)

    def without_test(self):
        return self._replace(x_test=None, y_test=None)


class Task(NamedTuple):
    name: str
    title: str  # tables and plots
    model: str  # the CSV's `model` column
    epochs: int  # default budget
    batch_size: int
    relative_cost: float  # seconds of an epoch relative to an MLP epoch (first-order), for the ETA
    build: Callable  # build(split, regularization) -> keras.Model
    loss: str
    metrics: Callable  # () -> list of Keras metrics
    paper: str  # where the experiment comes from
    compile_kwargs: dict = {}  # more keywords for `compile` (a user's task: loss_weights)


def title(name, runs=()):
    """A task's title: the one its runs carry, else the built-in task's, else its name."""
    found = next((r["task_title"] for r in runs if r.get("task") == name and r.get("task_title")), None)
    return found or (TASKS[name].title if name in TASKS else name)


def _mlp(split, regularization):
    from keras_optzoo.tasks import mnist

    return mnist.mlp(regularization=regularization)


def _cnn(split, regularization):
    from keras_optzoo.tasks import mnist

    return mnist.cnn(filters=CNN_FILTERS, dense=CNN_DENSE)


def _char_transformer(split, regularization):
    from keras_optzoo.tasks import text

    return text.transformer(TEXT_VOCAB, TEXT_LENGTH, **TEXT_MODEL)


def _karate_model(kind):
    def build(split, regularization):
        from keras_optzoo.tasks import karate

        return karate.gcn(split.graph) if kind == "gcn" else karate.conv1d(split.graph.number_of_nodes())

    return build


def _accuracy():
    return ["accuracy"]


def _accuracy_auc():
    import keras

    return ["accuracy", keras.metrics.AUC(name="auc")]


# The CNN at a width that fits the 15-minute budget with the second-order
# methods on torch (whose double backward through Conv2D is the slowest), on
# the whole training split (6,400 images), 10 epochs of 100 steps: after 1,000
# steps BatchNormalization's moving statistics (momentum 0.99) keep 0.99^1000
# = 4e-5 of their initial values (after the 96 steps of the first benchmark,
# 38 %: its validation numbers swung 10-30 points between seeds).
CNN_FILTERS, CNN_DENSE, CNN_TRAIN = 8, 32, None
# The character-level Transformer on Tiny Shakespeare: windows of 64
# characters (62 distinct), the last TEXT_TEST of them the test set.
TEXT_LENGTH, TEXT_VOCAB, TEXT_TEST = 64, 62, 0.1
TEXT_MODEL = dict(width=64, heads=4, mlp=128, blocks=1)

TASKS = {
    "mnist-mlp": Task("mnist-mlp", "MNIST, MLP 784-500-10 (linear hidden layer)", "mlp-784-500-10", 3, 64, 1.0,
                      _mlp, "sparse_categorical_crossentropy", _accuracy, "paper 001, Figs. 1-2"),
    "mnist-cnn": Task("mnist-cnn", "MNIST, small CNN (Conv2D-BatchNorm-Pool x2, Dense), 1,000 steps",
                      f"cnn-{CNN_FILTERS}-{2 * CNN_FILTERS}-{CNN_DENSE}", 10, 64, 4.0, _cnn,
                      "sparse_categorical_crossentropy", _accuracy, "this benchmark"),
    "shakespeare": Task("shakespeare", "Tiny Shakespeare, character-level Transformer (1 block, width 64, 4 heads)",
                        "char-transformer-64", 8, 32, 6.0, _char_transformer, "sparse_categorical_crossentropy",
                        _accuracy, "this benchmark (where SOAP and Sophia report their gains)"),
    "karate": Task("karate", "Karate Club link prediction (GCN)", "gcn", 40, 16, 0.05,
                   _karate_model("gcn"), "binary_crossentropy", _accuracy_auc, "paper 001, Figs. 3-4"),
}
ORDER = tuple(TASKS)  # tables and plots follow this order


def karate_task(kind):
    """The Karate task with `kind` ("gcn" or "conv1d", paper 001's model)."""
    title = "Karate Club link prediction (" + ("GCN" if kind == "gcn" else "Conv1D, paper 001's model") + ")"
    return TASKS["karate"]._replace(title=title, model=kind, build=_karate_model(kind))


def _carve_validation(x, y):
    """The last VALIDATION_FRACTION of a fixed permutation of the training data."""
    order = np.random.default_rng(1234).permutation(len(x))
    n_val = int(round(VALIDATION_FRACTION * len(x)))
    train, val = order[:-n_val], order[-n_val:]
    return x[train], y[train], x[val], y[val]


def mnist_splits(data, cnn_train=CNN_TRAIN):
    """{"mnist-mlp": Split, "mnist-cnn": Split} from `((x_train, y_train), (x_test, y_test))`."""
    (x_train, y_train), (x_test, y_test) = data
    x_tr, y_tr, x_val, y_val = _carve_validation(x_train, y_train)
    mlp = Split(x_tr, y_tr, x_val, y_val, x_test, y_test)
    return {"mnist-mlp": mlp, "mnist-cnn": mlp._replace(x_train=x_tr[:cnn_train], y_train=y_tr[:cnn_train])}


def text_split(windows=None):
    """The Tiny Shakespeare Split: the last TEXT_TEST of the windows (in text
    order: later scenes) are the test set, the validation split is carved out
    of the rest. `windows` keeps only the first ones (--quick)."""
    from keras_optzoo.tasks import text

    raw = text.load_shakespeare()
    x, y = text.char_dataset(raw, TEXT_LENGTH, text.vocabulary(raw))
    if windows:
        x, y = x[:windows], y[:windows]
    n_test = int(round(TEXT_TEST * len(x)))
    x_tr, y_tr, x_val, y_val = _carve_validation(x[:-n_test], y[:-n_test])
    return Split(x_tr, y_tr, x_val, y_val, x[-n_test:], y[-n_test:])


def karate_split(seed):
    """The Karate edges split for `seed` (a new split per seed, as the seeds vary the data)."""
    from keras_optzoo.tasks import karate

    s = karate.split_edges(seed=seed, validation_fraction=VALIDATION_FRACTION)
    return Split(s["x_train"], s["y_train"], s["x_val"], s["y_val"], s["x_test"], s["y_test"], s["train_graph"])
