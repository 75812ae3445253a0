"""The real data loaders and the seed models."""

import gzip

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from keras_optzoo.tasks import karate, mnist, text


def test_embedded_mnist_is_the_real_10k_split_8000_2000():
    (x_train, y_train), (x_test, y_test) = mnist.load_embedded()
    assert x_train.shape == (8000, 784) and x_test.shape == (2000, 784)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() == 1.0
    # The first labels of the official t10k file.
    assert list(y_train[:10]) == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(np.concatenate([y_train, y_test])).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_idx_directory_source(tmp_path):
    """`source="idx"` reads a directory laid out like the official download."""
    for split in ("train", "t10k"):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            src = mnist.EMBEDDED_DIR / f"t10k-{kind}.gz"
            (tmp_path / f"{split}-{kind}.gz").write_bytes(src.read_bytes())
    (x_train, _), (x_test, y_test) = mnist.load_data(source="idx", path=tmp_path)
    assert x_train.shape == x_test.shape == (10000, 784)
    assert y_test[0] == 7


def test_corrupt_or_missing_idx_file_names_the_file(tmp_path):
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00\x00\x00\x05" * 3 + b"abc"))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz is corrupt"):
        mnist.read_idx(bad)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        mnist.read_idx(bad)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        mnist.load_idx(tmp_path)
    with pytest.raises(ValueError, match="`source` must be one of"):
        mnist.load_data(source="web")


def test_tfds_source_needs_its_package(monkeypatch):
    # As if tensorflow-datasets were not installed (Python's own
    # ModuleNotFoundError); the loading itself is tests/test_tfds.py.
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r"tensorflow-datasets.*keras-optzoo\[tfds\]"):
        mnist.load_data(source="tfds")


@pytest.mark.parametrize("regularization", mnist.REGULARIZATION)
def test_mnist_mlp_is_784_500_10_with_keras_regularizers(regularization):
    model = mnist.mlp(regularization=regularization)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [500, 10]
    assert dense[0].activation is keras.activations.linear  # seed 001: linear hidden layer
    assert model.count_params() == 784 * 500 + 500 + 500 * 10 + 10
    if regularization in ("l1", "l2"):
        assert type(dense[0].kernel_regularizer).__name__ == regularization.upper()
    assert any(isinstance(l, keras.layers.Dropout) for l in model.layers) == (regularization == "dropout")


def test_mnist_cnn_is_conv_batchnorm_pool_dense():
    import keras

    model = mnist.cnn(dropout=0.25)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("Conv2D") == 2 and kinds.count("BatchNormalization") == 2
    assert kinds.count("MaxPooling2D") == 2 and "Dropout" in kinds
    assert model.output_shape == (None, 10)
    (x, y), _ = mnist.load_embedded()
    model.compile(optimizer=keras.optimizers.Adam(), loss=mnist.LOSS)
    first = model.evaluate(x[:512], y[:512], verbose=0)
    model.fit(x[:512], y[:512], batch_size=64, epochs=2, verbose=0)
    assert model.evaluate(x[:512], y[:512], verbose=0) < first


def test_karate_split_is_balanced_seeded_and_leak_free():
    import networkx as nx

    split = karate.split_edges(seed=3)
    graph = nx.karate_club_graph()
    assert graph.number_of_nodes() == 34 and graph.number_of_edges() == 78
    x_test, y_test = split["x_test"], split["y_test"]
    assert len(split["x_train"]) + len(x_test) == 2 * 78
    assert y_test.sum() == len(y_test) / 2 and split["y_train"].sum() == len(split["y_train"]) / 2
    test_pos = {tuple(sorted(e)) for e in x_test[y_test == 1]}
    train_edges = {tuple(sorted(e)) for e in split["train_graph"].edges()}
    assert not test_pos & train_edges  # no test edge in the propagation graph
    assert train_edges | test_pos == {tuple(sorted(e)) for e in graph.edges()}
    for x, y in ((split["x_train"], split["y_train"]), (x_test, y_test)):
        for u, v in x[y == 0]:
            assert not graph.has_edge(int(u), int(v))  # negatives are real non-edges
    again = karate.split_edges(seed=3)
    np.testing.assert_array_equal(again["x_test"], x_test)
    # The GCN's adjacency is that of the train graph: a held-out edge has A_hat 0.
    model = karate.build_model("gcn", split)
    a_hat = keras.ops.convert_to_numpy(model.get_layer("gcn").adjacency)
    u, v = next(iter(test_pos))
    assert a_hat[u, v] == 0.0
    d = np.array([split["train_graph"].degree(i) + 1 for i in range(34)])
    np.testing.assert_allclose(a_hat[0, 0], 1.0 / d[0], rtol=1e-6)


def test_karate_accepts_networkx_and_rejects_other_inputs():
    import networkx as nx

    g = nx.relabel_nodes(nx.karate_club_graph(), {i: f"n{i:02d}" for i in range(34)})
    assert karate.split_edges(g, seed=0)["num_nodes"] == 34
    with pytest.raises(TypeError, match="networkx graph or a spektral"):
        karate.split_edges([[0, 1]])


def test_karate_spektral_graph_interop():
    spektral = pytest.importorskip("spektral")
    import networkx as nx

    a = nx.to_scipy_sparse_array(nx.karate_club_graph())
    split = karate.split_edges(spektral.data.Graph(a=a), seed=0)
    assert split["num_nodes"] == 34 and len(split["x_test"]) == 2 * 16


@pytest.mark.parametrize("kind", karate.MODELS)
def test_karate_models_learn_the_training_edges(kind):
    split = karate.split_edges(seed=0)
    model = karate.build_model(kind, split)
    model.compile(optimizer=kz.Adam(0.01), loss=karate.LOSS, metrics=["accuracy"])
    history = model.fit(split["x_train"], split["y_train"], batch_size=16, epochs=40, verbose=0)
    assert history.history["loss"][-1] < 0.6 * history.history["loss"][0]
    assert history.history["accuracy"][-1] > 0.8


def test_shakespeare_is_the_char_rnn_excerpt_and_windows_predict_the_next_character():
    raw = text.load_shakespeare()
    assert len(raw) == 204_795 and raw.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")
    assert len(text.vocabulary(raw)) == 62
    x, y = text.char_dataset(raw, 64)
    assert x.shape == y.shape == ((len(raw) - 1) // 64, 64) and x.dtype == np.int32
    vocab = text.vocabulary(raw)
    decode = lambda ids: "".join(vocab[i] for i in ids)
    # Window i is raw[64 i : 64 i + 64]; its target is the same span moved one character on.
    for i in (0, 1, len(x) - 1):
        assert decode(x[i]) == raw[64 * i:64 * i + 64] and decode(y[i]) == raw[64 * i + 1:64 * i + 65]
    with pytest.raises(ValueError, match="characters outside `vocab`"):
        text.char_dataset("abc", 2, vocab="ab")
    with pytest.raises(ValueError, match="`length` must be a positive integer"):
        text.char_dataset(raw, 0)


def test_char_transformer_is_causal_and_saves(tmp_path):
    """Changing a later character never changes an earlier position's
    prediction; a saved model loads back without custom_objects."""
    keras.utils.set_random_seed(0)
    model = text.transformer(vocab_size=11, length=8, width=16, heads=2, mlp=16)
    x = np.random.default_rng(0).integers(0, 11, (2, 8)).astype("int32")
    changed = x.copy()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    a, b = keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(model(changed))
    np.testing.assert_allclose(a[:, :5], b[:, :5], rtol=1e-5, atol=1e-6)
    assert np.abs(a[:, 5:] - b[:, 5:]).max() > 1e-4
    assert a.shape == (2, 8, 11) and np.allclose(a.sum(-1), 1.0, atol=1e-5)
    model.save(tmp_path / "char.keras")
    loaded = keras.saving.load_model(tmp_path / "char.keras")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(x)), a, rtol=1e-6)
