"""The tuned protocol on real MNIST with a tiny budget: learning-rate selection
never reads the test set, picks the grid point with the best validation loss,
and a reused (compiled once) trainer gives the same numbers as a fresh one."""

import math

import numpy as np
import pytest

import keras
from keras_optzoo.bench import optimizers as bench_optimizers
from keras_optzoo.bench import protocol, tasks, train
from keras_optzoo.bench.run import Progress
from keras_optzoo.bench.train import Trainer
from keras_optzoo.tasks import mnist

# Softmax regression on 400 real MNIST images keeps this fast; the protocol
# does not depend on the model.
TASK = tasks.TASKS["mnist-mlp"]._replace(build=lambda split, regularization: mnist.logistic_regression())
SGD = bench_optimizers.AVAILABLE["sgd"]


@pytest.fixture(scope="module")
def split():
    (x, y), (xt, yt) = mnist.load_embedded()
    return tasks.mnist_splits(((x[:400], y[:400]), (xt[:100], yt[:100])))["mnist-mlp"]


def _poisoned(split):
    """Test images of NaN: any use of them shows as a NaN loss."""
    return split._replace(x_test=np.full_like(split.x_test, np.nan))


def test_selection_refuses_a_split_with_test_data(split):
    with pytest.raises(ValueError, match="must not see the test set"):
        protocol.select_learning_rate(None, split, SGD.grid(), 2, Progress(1), 1.0)


def test_selection_with_a_poisoned_test_set_picks_the_best_validation_loss(split):
    poisoned = _poisoned(split)
    trainer = Trainer(TASK, SGD, poisoned)
    chosen, curves, rows, snapshot = protocol.select_learning_rate(
        trainer, poisoned.without_test(), SGD.grid(), 3, Progress(1), 1.0)
    assert all(math.isfinite(v) for c in curves.values() for v in c["validation_loss"])
    # The chosen rate is the survivor with the lowest final validation loss, and
    # every point stopped at the rung was worse there than every survivor.
    survived = [r for r in rows if r["survived"] and not r["grown"]]
    assert len(survived) == protocol.KEEP
    finished = [r for r in rows if r["survived"]]  # with any points grown beyond an edge
    assert chosen == min(finished, key=lambda r: r["final_validation_loss"])["learning_rate"]
    assert [r["learning_rate"] for r in rows if r["chosen"]] == [chosen]
    worst_survivor = max(r["validation_loss_at_rung"] for r in survived)
    assert all(r["validation_loss_at_rung"] >= worst_survivor for r in rows if not r["survived"])
    # The curves are the validation split's: Keras's own evaluate on it agrees.
    trainer.restore(snapshot)
    val = trainer.model.evaluate(split.x_val, split.y_val, verbose=0, return_dict=True)["loss"]
    assert val == pytest.approx(curves[chosen]["validation_loss"][-1], rel=1e-4)
    # Only now is the test set read, and the poison shows.
    assert math.isnan(trainer.evaluate_test(poisoned)["test_loss"])


def test_a_reused_trainer_matches_a_fresh_one_at_every_grid_point(split, monkeypatch):
    """With rung == epochs every grid point trains to the end: the chosen rate
    is the argmin of validation losses computed by fresh, separately compiled
    models (the grid's growth past an edge is off here; tested below)."""
    monkeypatch.setattr(protocol, "GROW", 0)
    grid = [SGD.grid()[0], SGD.grid()[-1]]
    chosen, curves, rows, _ = protocol.select_learning_rate(
        Trainer(TASK, SGD, split), split.without_test(), grid, 1, Progress(1), 1.0)
    fresh = {}
    for lr in grid:
        keras.utils.set_random_seed(0)
        trainer = Trainer(TASK, SGD, split)
        trainer.start(split, 0, lr)
        fresh[lr] = trainer.fit(split, 0, 1)["validation_loss"][-1]
    for lr in grid:
        assert curves[lr]["validation_loss"][-1] == pytest.approx(fresh[lr], rel=1e-4), lr
    assert chosen == min(fresh, key=fresh.get)


@pytest.mark.parametrize("grid, direction", [([1e-4, 3.16e-4], 1), ([31.6, 100.0], -1)],
                         ids=["best-at-top-edge", "best-at-bottom-edge"])
def test_a_choice_at_an_edge_grows_the_grid_beyond_it(split, grid, direction):
    """SGD on softmax regression: 1e-4 is far too small, 100 diverges. The grid
    grows by sqrt(10) past the edge the best sits on until the best is
    interior (or GROW points were added, then it is marked at the edge);
    each added point's loss is that of a fresh run at that rate."""
    chosen, curves, rows, _ = protocol.select_learning_rate(
        Trainer(TASK, SGD, split), split.without_test(), grid, 1, Progress(1), 1.0)
    grown = [r for r in rows if r["grown"]]
    assert grown, "a choice at the edge did not grow the grid"
    edge = grid[-1] if direction > 0 else grid[0]
    expected = [float(f"{edge * math.sqrt(10) ** (direction * (i + 1)):.3g}") for i in range(len(grown))]
    assert [r["learning_rate"] for r in grown] == pytest.approx(expected, rel=1e-6)
    finals = {r["learning_rate"]: r["final_validation_loss"] for r in rows}
    assert chosen == min((lr for lr in finals if math.isfinite(finals[lr])), key=finals.get)
    tried = sorted(finals)
    (chosen_row,) = [r for r in rows if r["chosen"]]
    if len(grown) < protocol.GROW:
        assert tried[0] < chosen < tried[-1] and not chosen_row["at_edge"]
    else:
        assert chosen_row["at_edge"] == (chosen in (tried[0], tried[-1]))
    last = grown[-1]["learning_rate"]
    keras.utils.set_random_seed(0)
    trainer = Trainer(TASK, SGD, split)
    trainer.start(split, 0, last)
    fresh = trainer.fit(split, 0, 1)["validation_loss"][-1]
    assert finals[last] == pytest.approx(fresh, rel=1e-4) or not (math.isfinite(fresh) or math.isfinite(finals[last]))


def test_an_interior_choice_does_not_grow_the_grid(split):
    chosen, _, rows, _ = protocol.select_learning_rate(
        Trainer(TASK, SGD, split), split.without_test(), [0.01, 0.1, 1.0], 1, Progress(1), 1.0)
    if chosen in (0.01, 1.0):
        pytest.skip(f"on this data SGD's best of 0.01/0.1/1 was {chosen}, an edge; the growth test covers it")
    assert not any(r["grown"] for r in rows) and not any(r["at_edge"] for r in rows)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="TensorFlow's array pipeline; JAX and torch feed Keras's own array path")
def test_tensorflows_array_pipeline_feeds_what_keras_feeds(split):
    """`feed` on TensorFlow: unshuffled, the same batches as Keras's own
    array path (the weights after one epoch agree to float32 round-off);
    shuffled, a new permutation every epoch, the same for the same seed."""
    from keras_optzoo import backend

    x, y = split.x_train[:100], split.y_train[:100]
    data = train.feed(x, y, 16)
    assert set(data) == {"x", "shuffle"} and data["shuffle"] is False
    weights = []
    for kwargs in (data, dict(x=x, y=y, batch_size=16, shuffle=False)):
        keras.utils.set_random_seed(0)
        model = mnist.logistic_regression()
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        model.fit(**kwargs, epochs=1, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    index = np.arange(100)

    def orders(seed):
        batches = backend.array_batches(index, index, 16, shuffle=True, seed=seed)
        return [np.concatenate([b[0].numpy() for b in batches]) for _ in range(2)]

    first, second = orders(7)
    assert [len(b[0]) for b in backend.array_batches(index, index, 16)] == [16] * 6 + [4]
    assert sorted(first) == list(index) and sorted(second) == list(index)
    assert not np.array_equal(first, second) and not np.array_equal(first, index)
    assert all(np.array_equal(a, b) for a, b in zip(orders(7), (first, second)))
    assert not np.array_equal(orders(8)[0], first)
