"""Character-level language modelling on real text: Tiny Shakespeare.

`load_shakespeare()` reads the excerpt shipped in the package (the first
204,795 characters of char-rnn's Tiny Shakespeare; Shakespeare's plays are in
the public domain, char-rnn is MIT; see `data/shakespeare/README.md`).
`char_dataset(text, length)` turns a text into (x, y) windows where y is x
shifted by one character. `transformer(...)` is a small decoder-only
Transformer (token + position embeddings, causal multi-head self-attention,
LayerNormalization, a ReLU MLP), the model where SOAP and Sophia report
their gains.
"""

import gzip
from pathlib import Path

import numpy as np

TEXT = Path(__file__).resolve().parent / "data" / "shakespeare" / "tinyshakespeare-200k.txt.gz"


def load_shakespeare(path=TEXT):
    """The Tiny Shakespeare excerpt as one string."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def vocabulary(text):
    """The sorted distinct characters of `text`."""
    return sorted(set(text))


def char_dataset(text, length, vocab=None):
    """(x, y) int32 arrays of shape (n, length): non-overlapping windows of
    `length + 1` characters, x the first `length`, y the last `length` (the
    next character at every position). Characters outside `vocab` raise."""
    vocab = vocabulary(text) if vocab is None else list(vocab)
    index = {c: i for i, c in enumerate(vocab)}
    missing = sorted(set(text) - set(index))
    if missing:
        raise ValueError(f"`text` has characters outside `vocab`: {''.join(missing)!r}")
    if length < 1:
        raise ValueError(f"`length` must be a positive integer; received {length}")
    ids = np.fromiter((index[c] for c in text), dtype=np.int32, count=len(text))
    n = (len(ids) - 1) // length
    x = ids[: n * length].reshape(n, length)
    y = ids[1: n * length + 1].reshape(n, length)
    return x, y


def _position_layer():
    import keras

    @keras.saving.register_keras_serializable(package="keras_optzoo")
    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned embedding of each position to its input (batch, length, width)."""

        def build(self, input_shape):
            self.positions = self.add_weight(shape=tuple(input_shape[1:]), initializer="random_normal",
                                             name="positions")

        def call(self, inputs):
            return inputs + keras.ops.cast(self.positions, inputs.dtype)

    return PositionEmbedding


def transformer(vocab_size, length, width=64, heads=4, mlp=128, blocks=1, dropout=0.0, activation="relu"):
    """A decoder-only Transformer over `length` characters: Embedding(width) +
    positions, then `blocks` x [LayerNorm - causal MultiHeadAttention(heads) -
    residual - LayerNorm - Dense(mlp, `activation`) - Dense(width) - residual],
    a final LayerNorm and Dense(vocab_size, softmax) at every position."""
    import keras

    tokens = keras.Input((length,), dtype="int32")
    h = _position_layer()()(keras.layers.Embedding(vocab_size, width)(tokens))
    for _ in range(blocks):
        a = keras.layers.LayerNormalization()(h)
        a = keras.layers.MultiHeadAttention(heads, width // heads, dropout=dropout)(a, a, use_causal_mask=True)
        h = h + a
        m = keras.layers.LayerNormalization()(h)
        m = keras.layers.Dense(width)(keras.layers.Dense(mlp, activation=activation)(m))
        h = h + m
    h = keras.layers.LayerNormalization()(h)
    return keras.Model(tokens, keras.layers.Dense(vocab_size, activation="softmax")(h), name="char_transformer")


LOSS = "sparse_categorical_crossentropy"
METRICS = ("accuracy",)
