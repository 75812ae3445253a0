"""Link prediction on Zachary's Karate Club (seed 001, section IV-B).

The graph comes from `networkx.karate_club_graph()` (34 nodes, 78 edges), or
from any networkx graph or `spektral.data.Graph` you pass. `split_edges`
holds out a seeded fraction of the edges as test positives, samples as many
non-edges as negatives for each split, and removes the test edges from the
graph that the model propagates over, so no test edge is visible in training.

Two models, written with Keras layers and `keras.ops` (spektral's layers do
not run on Keras 3):

- `gcn`: a two-layer GCN encoder, H = A_hat relu(A_hat W_1) W_2 with
  A_hat = D^-1/2 (A + I) D^-1/2 and one-hot node features, and a dot-product
  decoder sigmoid(h_u . h_v);
- `conv1d`: seed 001's variant: a node embedding, two Conv1D layers over the
  (u, v) pair, and a dense output.

Inputs are int32 node pairs of shape (batch, 2); targets are 1 (edge) or 0.
"""

import numpy as np

import keras
from keras import ops

LOSS = "binary_crossentropy"


def _metrics():
    return ["accuracy", keras.metrics.AUC(name="auc")]


def to_networkx(graph=None):
    """The Karate Club graph, or `graph` (networkx or spektral) as an undirected networkx graph."""
    import networkx as nx

    if graph is None:
        return nx.karate_club_graph()
    if isinstance(graph, nx.Graph):
        return nx.Graph(graph)
    adjacency = getattr(graph, "a", None)  # spektral.data.Graph
    if adjacency is None:
        raise TypeError(
            "`graph` must be a networkx graph or a spektral.data.Graph with an adjacency "
            f"matrix `a`; received {type(graph).__name__}."
        )
    dense = adjacency.toarray() if hasattr(adjacency, "toarray") else np.asarray(adjacency)
    return nx.from_numpy_array((dense + dense.T) > 0)


def split_edges(graph=None, test_fraction=0.2, seed=0, validation_fraction=0.0):
    """Seeded train/test split of positive edges with as many sampled negatives.

    Returns a dict with `x_train`, `y_train`, `x_test`, `y_test` (node pairs
    and 0/1 labels), `train_graph` (the graph without the test edges) and
    `num_nodes`. With `validation_fraction` > 0 a further fraction of the edges
    (and as many negatives) is held out of training as `x_val`, `y_val`, and
    removed from `train_graph` too; the test split is the same as without it.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"`test_fraction` must be in (0, 1); received {test_fraction!r}.")
    if not 0.0 <= validation_fraction < 1.0 - test_fraction:
        raise ValueError(
            f"`validation_fraction` must be in [0, 1 - test_fraction); received {validation_fraction!r}."
        )
    g = to_networkx(graph)
    g = nx_relabel(g)
    rng = np.random.default_rng(seed)
    edges = np.array(sorted(tuple(sorted(e)) for e in g.edges()), dtype="int32")
    edges = edges[rng.permutation(len(edges))]
    n_test = max(1, int(round(test_fraction * len(edges))))
    n_val = int(round(validation_fraction * len(edges)))
    test_pos, val_pos, train_pos = edges[:n_test], edges[n_test : n_test + n_val], edges[n_test + n_val :]

    n = g.number_of_nodes()
    existing = {tuple(e) for e in edges}
    candidates = np.array(
        [(u, v) for u in range(n) for v in range(u + 1, n) if (u, v) not in existing], dtype="int32"
    )
    chosen = candidates[rng.choice(len(candidates), size=len(edges), replace=False)]
    test_neg, val_neg, train_neg = chosen[:n_test], chosen[n_test : n_test + n_val], chosen[n_test + n_val :]

    train_graph = g.copy()
    train_graph.remove_edges_from(map(tuple, np.concatenate([test_pos, val_pos])))

    def stack(pos, neg):
        x = np.concatenate([pos, neg]).astype("int32")
        y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]).astype("float32")
        order = rng.permutation(len(x))
        return x[order], y[order]

    x_train, y_train = stack(train_pos, train_neg)
    x_test, y_test = stack(test_pos, test_neg)
    validation = {}
    if n_val:
        validation["x_val"], validation["y_val"] = stack(val_pos, val_neg)
    return {
        **validation,
        "x_train": x_train,
        "y_train": y_train,
        "x_test": x_test,
        "y_test": y_test,
        "train_graph": train_graph,
        "num_nodes": n,
    }


def nx_relabel(g):
    """Relabels nodes to 0..n-1 (sorted), as the models index nodes by integer."""
    import networkx as nx

    return nx.convert_node_labels_to_integers(g, ordering="sorted")


def normalized_adjacency(graph):
    """A_hat = D^-1/2 (A + I) D^-1/2 of a networkx graph, float32."""
    import networkx as nx

    # weight=None: networkx's Karate graph carries interaction counts as edge
    # weights; the GCN uses the unweighted adjacency.
    a = nx.to_numpy_array(graph, nodelist=sorted(graph.nodes()), dtype="float64", weight=None)
    a = a + np.eye(len(a))
    d = 1.0 / np.sqrt(a.sum(axis=1))
    return (a * d[:, None] * d[None, :]).astype("float32")


@keras.saving.register_keras_serializable(package="keras_optzoo")
class GCNLinkPredictor(keras.layers.Layer):
    """Two GCN layers over a fixed normalized adjacency, then a dot-product decoder."""

    def __init__(self, num_nodes, hidden_units=16, output_units=16, **kwargs):
        super().__init__(**kwargs)
        self.num_nodes = num_nodes
        self.hidden_units = hidden_units
        self.output_units = output_units

    def build(self, input_shape):
        n = self.num_nodes
        self.adjacency = self.add_weight(
            shape=(n, n), initializer="zeros", trainable=False, name="adjacency"
        )
        self.w1 = self.add_weight(shape=(n, self.hidden_units), initializer="glorot_uniform", name="w1")
        self.w2 = self.add_weight(
            shape=(self.hidden_units, self.output_units), initializer="glorot_uniform", name="w2"
        )

    def embeddings(self):
        # One-hot node features: A_hat X W_1 = A_hat W_1.
        h = ops.relu(ops.matmul(self.adjacency, self.w1))
        return ops.matmul(self.adjacency, ops.matmul(h, self.w2))

    def call(self, pairs):
        h = self.embeddings()
        pairs = ops.cast(pairs, "int32")
        hu = ops.take(h, pairs[:, 0], axis=0)
        hv = ops.take(h, pairs[:, 1], axis=0)
        return ops.sigmoid(ops.sum(hu * hv, axis=-1, keepdims=True))

    def get_config(self):
        config = super().get_config()
        config.update(
            num_nodes=self.num_nodes, hidden_units=self.hidden_units, output_units=self.output_units
        )
        return config


def gcn(train_graph, hidden_units=16, output_units=16):
    """GCN encoder + dot-product decoder over `train_graph` (test edges removed)."""
    n = train_graph.number_of_nodes()
    layer = GCNLinkPredictor(n, hidden_units, output_units, name="gcn")
    model = keras.Sequential([keras.Input((2,), dtype="int32"), layer], name="karate_gcn")
    layer.adjacency.assign(normalized_adjacency(train_graph))
    return model


def conv1d(num_nodes, embedding_dim=16, filters=16):
    """Seed 001's model: node embedding, two Conv1D layers over the pair, dense output."""
    return keras.Sequential(
        [
            keras.Input((2,), dtype="int32"),
            keras.layers.Embedding(num_nodes, embedding_dim),
            keras.layers.Conv1D(filters, 2, padding="same", activation="relu"),
            keras.layers.Conv1D(filters, 2, padding="valid", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="karate_conv1d",
    )


MODELS = ("gcn", "conv1d")


def build_model(kind, split):
    if kind not in MODELS:
        raise ValueError(f"`kind` must be one of {', '.join(MODELS)}; received {kind!r}.")
    return gcn(split["train_graph"]) if kind == "gcn" else conv1d(split["num_nodes"])
