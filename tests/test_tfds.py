"""`keras_optzoo.tasks.mnist.load_data(source="tfds")` on tensorflow-datasets'
own mock data (`tfds.testing.mock_data`: no download, no network), checked
against the examples tfds itself yields, then trained on."""

import numpy as np
import pytest

import keras
from keras_optzoo import Adam
from keras_optzoo.tasks import mnist

tfds = pytest.importorskip(
    "tensorflow_datasets", reason="tensorflow-datasets is not installed (pip install 'keras-optzoo[tfds]')"
)
pytest.importorskip("tensorflow", reason="tensorflow-datasets reads through tf.data; tensorflow is not installed")

N = 40


def _tfds_examples(split):
    images, labels = zip(*tfds.as_numpy(tfds.load("mnist", split=split, as_supervised=True)))
    return np.stack(images), np.array(labels)


def test_load_data_tfds_returns_tfds_examples_scaled_and_flattened():
    with tfds.testing.mock_data(num_examples=N):
        (x_train, y_train), (x_test, y_test) = mnist.load_data(source="tfds")
        raw = {split: _tfds_examples(split) for split in ("train", "test")}
    for (x, y), split in (((x_train, y_train), "train"), ((x_test, y_test), "test")):
        images, labels = raw[split]
        assert images.shape == (N, 28, 28, 1) and images.dtype == np.uint8
        assert x.shape == (N, 784) and x.dtype == np.float32 and y.dtype == np.int32
        np.testing.assert_array_equal(x, images.reshape(N, 784).astype("float32") / 255.0)
        np.testing.assert_array_equal(y, labels)
        assert 0.0 <= x.min() and x.max() <= 1.0 and set(np.unique(y)) <= set(range(10))


def test_tfds_data_trains_a_keras_model():
    with tfds.testing.mock_data(num_examples=N):
        (x_train, y_train), _ = mnist.load_data(source="tfds")
    model = mnist.logistic_regression()
    model.compile(optimizer=Adam(0.01), loss=mnist.LOSS)
    before = model.evaluate(x_train, y_train, verbose=0)
    model.fit(x_train, y_train, batch_size=N, epochs=5, verbose=0)
    assert model.evaluate(x_train, y_train, verbose=0) < before
