"""The tuned protocol on real MNIST with a tiny budget: learning-rate selection
never reads the test set, picks the grid point with the best validation loss,
and a reused (compiled once) trainer gives the same numbers as a fresh one."""

import math

import numpy as np
import pytest

import keras
from keras_optzoo.bench import optimizers as bench_optimizers
from keras_optzoo.bench import protocol, tasks
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
    survived = [r for r in rows if r["survived"]]
    assert len(survived) == protocol.KEEP
    assert chosen == min(survived, key=lambda r: r["final_validation_loss"])["learning_rate"]
    assert [r["learning_rate"] for r in rows if r["chosen"]] == [chosen]
    worst_survivor = max(r["validation_loss_at_rung"] for r in survived)
    assert all(r["validation_loss_at_rung"] >= worst_survivor for r in rows if not r["survived"])
    # The curves are the validation split's: Keras's own evaluate on it agrees.
    trainer.restore(snapshot)
    val = trainer.model.evaluate(split.x_val, split.y_val, verbose=0, return_dict=True)["loss"]
    assert val == pytest.approx(curves[chosen]["validation_loss"][-1], rel=1e-4)
    # Only now is the test set read, and the poison shows.
    assert math.isnan(trainer.evaluate_test(poisoned)["test_loss"])


def test_a_reused_trainer_matches_a_fresh_one_at_every_grid_point(split):
    """With rung == epochs every grid point trains to the end: the chosen rate
    is the argmin of validation losses computed by fresh, separately compiled
    models."""
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
