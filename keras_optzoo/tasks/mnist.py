"""MNIST: the real loaders and the seeds' models.

`load_data(source=...)` returns `(x_train, y_train), (x_test, y_test)` with
images as float32 in [0, 1], flattened to 784, and integer labels:

- "keras": `keras.datasets.mnist.load_data()` (downloads and caches 60k/10k);
- "tfds": `tensorflow_datasets.load("mnist")` (needs `tensorflow-datasets`);
- "idx": a directory `path` holding the four IDX files (`train-images-idx3-ubyte`
  etc., optionally `.gz`);
- "embedded": the real MNIST 10k test files shipped inside the package
  (`keras_optzoo/tasks/data/mnist/`, package data, so an installed wheel
  has them), split 8,000 train / 2,000 test;
- "auto" (default): "keras", and when no download is possible, "embedded" with
  a printed notice.
"""

import gzip
import struct
from pathlib import Path

import numpy as np

EMBEDDED_DIR = Path(__file__).resolve().parent / "data" / "mnist"
SOURCES = ("auto", "keras", "tfds", "idx", "embedded")
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Reads one IDX file (gzip-compressed or not) into a NumPy array.

    Raises `ValueError` naming the file if it is truncated or not IDX.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MNIST IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise ValueError(f"Cannot read IDX file {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path} is truncated (header).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"IDX file {path} is corrupt: expected {expected} data bytes for shape "
            f"{shape}, found {len(raw) - header}."
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _find(directory, stem):
    for name in (stem, stem + ".gz"):
        if (Path(directory) / name).is_file():
            return Path(directory) / name
    raise FileNotFoundError(f"MNIST IDX file not found: {Path(directory) / stem}[.gz]")


def _prepare(images, labels):
    x = images.reshape(len(images), -1).astype("float32") / 255.0
    return x, labels.astype("int32")


def load_embedded(n_train=8000, directory=EMBEDDED_DIR):
    """The 10k real MNIST test images kept in the repo, split n_train / rest."""
    images = read_idx(_find(directory, "t10k-images-idx3-ubyte"))
    labels = read_idx(_find(directory, "t10k-labels-idx1-ubyte"))
    x, y = _prepare(images, labels)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def load_idx(path):
    """Full MNIST from a directory of the four standard IDX files."""
    parts = []
    for split in ("train", "t10k"):
        images = read_idx(_find(path, f"{split}-images-idx3-ubyte"))
        labels = read_idx(_find(path, f"{split}-labels-idx1-ubyte"))
        parts.append(_prepare(images, labels))
    return parts[0], parts[1]


def _load_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            "source='tfds' needs the tensorflow-datasets package (pip install \"keras-optzoo[tfds]\", "
            "or pip install tensorflow-datasets); "
            "or use source='keras', 'idx' or 'embedded'."
        ) from err
    out = []
    for split in tfds.load("mnist", split=["train", "test"], as_supervised=True):
        # Fixed-size batches, not batch_size=-1: that one sizes its batch from
        # the split metadata, which a dataset without it (tfds's mock data) lacks.
        batches = list(tfds.as_numpy(split.batch(10_000)))
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        out.append(_prepare(images[..., 0], labels))
    return tuple(out)


def load_data(source="auto", path=None):
    """Returns `(x_train, y_train), (x_test, y_test)`; see the module docstring."""
    if source not in SOURCES:
        raise ValueError(f"`source` must be one of {', '.join(SOURCES)}; received {source!r}.")
    if source == "idx" or (source == "auto" and path is not None):
        if path is None:
            raise ValueError("`path` (a directory of MNIST IDX files) is required for source='idx'.")
        return load_idx(path)
    if source == "embedded":
        return load_embedded()
    if source == "tfds":
        return _load_tfds()
    import keras

    try:
        (xtr, ytr), (xte, yte) = keras.datasets.mnist.load_data()
    except Exception as err:  # no network, blocked host, corrupt cache
        if source == "keras":
            raise
        print(
            f"keras_optzoo: MNIST download unavailable ({type(err).__name__}: {err}); "
            f"using the embedded 10k MNIST test files in {EMBEDDED_DIR} (8,000 train / 2,000 test)."
        )
        return load_embedded()
    return _prepare(xtr, ytr), _prepare(xte, yte)


def logistic_regression(num_classes=10, input_dim=784):
    """Softmax regression: one Dense layer, the convex MNIST model of the tests."""
    import keras

    return keras.Sequential(
        [keras.Input((input_dim,)), keras.layers.Dense(num_classes, activation="softmax")]
    )



REGULARIZATION = ("none", "l1", "l2", "dropout")


def mlp(hidden_activation=None, regularization="none", strength=0.001, dropout=0.5):
    """Seed 001's MLP 784-500-10.

    `hidden_activation=None` keeps the paper's linear hidden layer; "relu" is
    the usual variant. `regularization` is one of "none", "l1", "l2" (Keras's
    own `keras.regularizers.L1/L2` with `strength` on both kernels, as in seed
    000 Table 2) or "dropout" (a `keras.layers.Dropout(dropout)` after the
    hidden layer).
    """
    import keras

    if regularization not in REGULARIZATION:
        raise ValueError(
            f"`regularization` must be one of {', '.join(REGULARIZATION)}; received {regularization!r}."
        )
    reg = {"l1": keras.regularizers.L1, "l2": keras.regularizers.L2}.get(regularization)
    kernel_regularizer = reg(strength) if reg else None
    layers = [
        keras.Input((784,)),
        keras.layers.Dense(500, activation=hidden_activation, kernel_regularizer=kernel_regularizer),
    ]
    if regularization == "dropout":
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(10, activation="softmax", kernel_regularizer=kernel_regularizer))
    return keras.Sequential(layers, name="mnist_mlp")


def cnn(filters=16, dense=64, dropout=0.0):
    """A small MNIST CNN, the model where curvature methods are usually argued
    to help: Conv2D(3x3, `filters`) - BatchNormalization - ReLU - MaxPool(2) -
    Conv2D(3x3, 2 `filters`) - BatchNormalization - ReLU - MaxPool(2) -
    Flatten - Dense(`dense`, relu) [- Dropout(`dropout`)] - Dense(10, softmax).
    Takes the flattened 784-pixel images `load_data` returns (a Reshape layer
    makes them 28x28x1). About 56k parameters with the defaults.
    """
    import keras

    layers = [keras.Input((784,)), keras.layers.Reshape((28, 28, 1))]
    for width in (filters, 2 * filters):
        layers += [
            keras.layers.Conv2D(width, 3, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(dense, activation="relu")]
    if dropout:
        layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(10, activation="softmax"))
    return keras.Sequential(layers, name="mnist_cnn")


LOSS = "sparse_categorical_crossentropy"
METRICS = ("accuracy",)
