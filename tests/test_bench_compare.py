"""`keras_optzoo.bench.compare` on users' own models: arrays, several outputs,
a PyDataset (every backend) and a tf.data.Dataset (TensorFlow), the CLI's
`--task module:function`, bad arguments caught before any training, and a
test set never read during selection. Runs are checked against the same
training done with Keras's own optimizers and `model.fit`."""

import math
import subprocess
import sys

import numpy as np
import pytest

import keras
from conftest import BACKEND
from keras_optzoo import bench
from keras_optzoo.bench import run, study
from keras_optzoo.bench import train as train_module

N_TRAIN, N_VAL = 192, 64


def _regression(seed=0):
    """y = x w + noise: a tiny real regression problem (8 features, 1 target)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_TRAIN + N_VAL, 8)).astype("float32")
    y = (x @ rng.normal(size=(8, 1)) + 0.1 * rng.normal(size=(N_TRAIN + N_VAL, 1))).astype("float32")
    return (x[:N_TRAIN], y[:N_TRAIN]), (x[N_TRAIN:], y[N_TRAIN:])


def _mlp():
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])


def _keras_fit(optimizer, train, validation, seed, epochs, batch_size=32):
    """The run the benchmark describes, done with Keras alone: one warm-up
    step (Keras's first `fit` draws a batch to build the model, which moves
    NumPy's shuffling state), then the weights of `build_model()` under
    `set_random_seed(seed)`, the optimizer's initial state and `fit` under
    seed 1000 * seed; returns the validation-loss curve."""
    model = _mlp()
    model.compile(optimizer=optimizer, loss="mse")
    x, y = train if isinstance(train, tuple) else (train, None)
    if y is None:
        model.fit(x, epochs=1, steps_per_epoch=1, shuffle=False, verbose=0)
    else:
        model.fit(x[:batch_size], y[:batch_size], batch_size=batch_size, verbose=0)
    keras.utils.set_random_seed(seed)
    model.set_weights(_mlp().get_weights())
    for v in optimizer.variables:
        if "learning_rate" not in v.path:
            v.assign(np.zeros(v.shape, v.dtype))
    keras.utils.set_random_seed(1000 * seed)
    data = dict(x=x, shuffle=False) if y is None else _shuffled(x, y, batch_size, seed)
    return model.fit(**data, epochs=epochs, validation_data=validation, verbose=0).history["val_loss"]


def _shuffled(x, y, batch_size, seed):
    """`fit`'s keywords for the training arrays of `seed`'s run, in the
    benchmark's order: Keras's own shuffling, except on TensorFlow, where the
    benchmark feeds arrays through `backend.array_batches` (shuffled from
    1000 * seed; test_bench_protocol checks it feeds what Keras feeds)."""
    return train_module.feed(x, y, batch_size, shuffle=True, seed=1000 * seed)


def test_compare_on_a_regression_model_matches_keras_and_reports_the_winner(tmp_path):
    train, validation = _regression()
    result = bench.compare(_mlp, train, validation, loss="mse", metrics=["mae"], optimizers=["sgd", "adam"],
                           epochs=3, seeds=2, batch_size=32, out=tmp_path / "out", verbose=0)
    assert {r["optimizer"] for r in result.runs} == {"sgd", "adam"} and len(result.runs) == 4
    for r in result.runs:
        assert r["steps_per_epoch"] == math.ceil(N_TRAIN / 32) and r["train_size"] == N_TRAIN
        assert len(r["validation_loss"]) == 3 and len(r["validation_mae"]) == 3
        assert r["step_time_s"] > 0
        if r["steps_to_target"] is not None:
            assert r["seconds_to_target"] == pytest.approx(r["steps_to_target"] * r["step_time_s"])
    # Seed 1's run at the chosen rate is Keras's own optimizer in Keras's own fit. (Adam's chosen
    # rate can be 0.1, where 3 epochs amplify the float32 round-off between our Adam and Keras's
    # to ~7e-4; a wrong rate, seed or initial state differs by more than 5 %. SGD's is exact.)
    for name, cls, rtol in (("sgd", keras.optimizers.SGD, 2e-4), ("adam", keras.optimizers.Adam, 2e-3)):
        run1 = next(r for r in result.runs if r["optimizer"] == name and r["seed"] == 1)
        expected = _keras_fit(cls(run1["learning_rate"]), train, validation, seed=1, epochs=3)
        np.testing.assert_allclose(run1["validation_loss"], expected, rtol=rtol)
    # The chosen rate is the grid point with the lowest final validation loss.
    for name in ("sgd", "adam"):
        finished = [g for g in result.grid if g["optimizer"] == name and g["survived"]]
        chosen = min(finished, key=lambda g: g["final_validation_loss"])["learning_rate"]
        assert {r["learning_rate"] for r in result.runs if r["optimizer"] == name} == {chosen}
    best = result.best()
    means = {n: np.mean([r["final_validation_loss"] for r in result.runs if r["optimizer"] == n])
             for n in ("sgd", "adam")}
    assert best.optimizer == min(means, key=means.get) and best.runner_up == max(means, key=means.get)
    stds = [np.std([r["final_validation_loss"] for r in result.runs if r["optimizer"] == n]) for n in means]
    assert best.margin_std == pytest.approx((max(means.values()) - min(means.values())) / max(stds), rel=1e-6)
    table = result.table()
    assert "| SGD (mini-batch) |" in table and "| Adam |" in table and "Step time (ms)" in table
    for name in ("results.csv", "grid.csv", "results.md", "curves.json", "tuned_my-task_loss_curves.png",
                 "tuned_my-task_time_to_target.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    md = (tmp_path / "out" / "results.md").read_text()
    assert "my-task (keras_optzoo.bench.compare)" in md and "Test accuracy" not in md


def _two_outputs():
    inputs = keras.Input((8,), name="features")
    h = keras.layers.Dense(16, activation="relu")(inputs)
    return keras.Model(inputs, {"value": keras.layers.Dense(1, name="value")(h),
                                "sign": keras.layers.Dense(1, activation="sigmoid", name="sign")(h)})


def test_compare_on_a_two_output_model_with_dict_losses_weights_and_a_second_order_optimizer():
    (x, y), (xv, yv) = _regression()
    train = (x, {"value": y, "sign": (y > 0).astype("float32")})
    validation = (xv, {"value": yv, "sign": (yv > 0).astype("float32")})
    result = bench.compare(_two_outputs, train, validation, test=validation, protocol="fixed",
                           loss={"value": "mse", "sign": "binary_crossentropy"}, loss_weights={"value": 1.0, "sign": 0.5},
                           metrics={"sign": ["accuracy"]}, optimizers=["adam", "sophiah"], epochs=2, seeds=1,
                           verbose=0)
    assert [r["optimizer"] for r in result.runs] == ["adam", "sophiah"]
    for r in result.runs:
        assert r["learning_rate"] == study.bench_optimizers.AVAILABLE[r["optimizer"]].default_learning_rate()
        # Keras's total is the weighted sum of the outputs' losses, per epoch and split.
        np.testing.assert_allclose(r["validation_loss"], np.add(r["validation_value_loss"],
                                                                0.5 * np.asarray(r["validation_sign_loss"])), rtol=1e-4)
        assert r["final_validation_loss"] < 10 and r["test_loss"] == pytest.approx(r["validation_loss"][-1], rel=1e-4)
        assert 0 <= r["test_sign_accuracy"] <= 1
    assert "Test loss" in result.table()


class Batches(keras.utils.PyDataset):
    """(x, y) in fixed batches of 32, in order."""

    def __init__(self, x, y):
        super().__init__()
        self.x, self.y = x, y

    def __len__(self):
        return math.ceil(len(self.x) / 32)

    def __getitem__(self, i):
        return self.x[32 * i:32 * (i + 1)], self.y[32 * i:32 * (i + 1)]


def test_compare_on_a_pydataset_matches_keras_fit_on_it():
    (x, y), validation = _regression()
    train = Batches(x, y)
    result = bench.compare(_mlp, train, Batches(*validation), loss="mse", optimizers=["adam"], protocol="fixed",
                           epochs=2, seeds=2, verbose=0)
    for r in result.runs:
        assert r["batch_size"] is None and r["train_size"] is None and r["steps_per_epoch"] == len(train)
    expected = _keras_fit(keras.optimizers.Adam(), train, Batches(*validation), seed=1, epochs=2)
    np.testing.assert_allclose(result.runs[1]["validation_loss"], expected, rtol=2e-4)


def test_compare_on_a_tf_data_dataset():
    if BACKEND != "tensorflow":
        pytest.skip(f"tf.data pipelines are the TensorFlow user's input; on {BACKEND} the PyDataset test covers "
                    f"datasets that batch themselves")
    import tensorflow as tf

    (x, y), (xv, yv) = _regression()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(48)
    validation = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(64)
    result = bench.compare(_mlp, train, validation, loss="mse", optimizers=["sgd"], epochs=2, seeds=1, verbose=0)
    r = result.runs[0]
    assert r["steps_per_epoch"] == 4 and r["batch_size"] is None and math.isfinite(r["final_validation_loss"])
    expected = _keras_fit(keras.optimizers.SGD(r["learning_rate"]), train, validation, seed=1, epochs=2)
    rerun = bench.compare(_mlp, train, validation, loss="mse", optimizers=["sgd"], protocol="fixed",
                          learning_rate=r["learning_rate"], epochs=2, seeds=2, verbose=0).runs[1]
    np.testing.assert_allclose(rerun["validation_loss"], expected, rtol=2e-4)


def _same_model():
    model = _mlp()
    return lambda: model


def _raises():
    raise RuntimeError("no such layer")


class OwnStep(keras.Model):
    """A subclassed model with its own train_step (with_curvature cannot wrap it)."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)

    def train_step(self, *args, **kwargs):
        return super().train_step(*args, **kwargs)


@pytest.mark.parametrize("change, words", [
    (dict(build_model="not a function"), "build_model must be a function"),
    (dict(build_model=lambda: "a model"), "must return a keras.Model"),
    (dict(build_model=_same_model()), "returned the same model twice"),
    (dict(build_model=_raises), "build_model\\(\\) raised RuntimeError: no such layer"),
    (dict(loss={"nope": "mse"}), "cannot be compiled"),
    (dict(train=(np.zeros((10, 8), "float32"), np.zeros((9, 1), "float32"))), "disagree on the number of samples"),
    (dict(train=(np.zeros((10, 5), "float32"), np.zeros((10, 1), "float32"))), "does not accept the train data"),
    (dict(train="data.csv"), "train must be an \\(x, y\\) tuple"),
    (dict(optimizers=["adam", "adamx"]), "unknown 'adamx'; valid values: \"all\" or a list of gd, sgd"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(seeds=1.5), "seeds must be a positive integer"),
    (dict(protocol="best"), "protocol must be one of tuned, fixed"),
    (dict(target=-1.0), "target must be a finite number > 0"),
    (dict(learning_rate=0.1), "learning_rate is the fixed protocol's"),
    (dict(loss=None), "loss is required"),
    (dict(train=(np.zeros((10, 8), "float32"), np.zeros((10, 1), "float32"), np.ones(10, "float32"))),
     "yields \\(x, y, sample_weight\\) batches"),
    (dict(name="runs/today"), "name must be a non-empty string without /"),
    (dict(build_model=OwnStep, optimizers=["adam", "sophiah"]), "sophiah train through with_curvature.*overrides"),
    (dict(out="/proc/version/out"), "out: '/proc/version/out' is not a writable directory"),
], ids=["not-callable", "not-a-model", "same-model", "build-raises", "bad-loss-key", "lengths", "features",
        "not-data", "unknown-optimizer", "epochs", "seeds", "protocol", "target", "lr-tuned", "no-loss",
        "sample-weight-tuple", "name-with-slash", "own-train-step", "out-not-writable"])
def test_bad_arguments_raise_before_any_training(change, words, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("training started before the arguments were checked")

    monkeypatch.setattr(run, "run_protocol", no_training)
    train, validation = _regression()
    kwargs = dict(build_model=_mlp, train=train, validation=validation, loss="mse", epochs=2, seeds=1, verbose=0)
    kwargs.update(change)
    with pytest.raises(ValueError, match=words):
        bench.compare(**kwargs)


def test_a_subclassed_model_built_at_its_first_call_is_compared():
    """Weights that exist only after the first call: the optimizer is built
    after them (it refused 'variables it was not built with'), and seed 1's
    run is Keras's own Adam on the same model."""
    train, validation = _regression()
    result = bench.compare(OwnStep, train, validation, loss="mse", optimizers=["adam"], protocol="fixed",
                           epochs=2, seeds=2, verbose=0)
    keras.utils.set_random_seed(1)
    model = OwnStep()
    model(train[0][:1])
    weights = model.get_weights()
    model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
    model.fit(train[0][:32], train[1][:32], batch_size=32, verbose=0)  # the benchmark's warm-up step
    model.set_weights(weights)
    for v in model.optimizer.variables:
        if "learning_rate" not in v.path:
            v.assign(np.zeros(v.shape, v.dtype))
    keras.utils.set_random_seed(1000)
    expected = model.fit(**_shuffled(*train, 32, seed=1), epochs=2, validation_data=validation,
                         verbose=0).history["val_loss"]
    np.testing.assert_allclose(result.runs[1]["validation_loss"], expected, rtol=2e-4)


def test_datasets_leave_full_batch_gd_out_or_refuse_it_and_a_batch_size(monkeypatch):
    x, y = _regression()[0]
    assert "gd" not in study._optimizer_names("all", dataset=True) and "gd" in study._optimizer_names("all", False)
    with pytest.raises(ValueError, match="gd trains on the whole training set in one batch"):
        study._optimizer_names(["gd", "adam"], dataset=True)
    with pytest.raises(ValueError, match="batch_size must be None when train is a dataset"):
        bench.compare(_mlp, Batches(x, y), Batches(x, y), loss="mse", epochs=1, batch_size=16)


def test_the_test_set_is_never_read_during_selection():
    """A test set of NaN targets (NaN inputs do not do: TensorFlow's ReLU maps
    NaN to 0): every choice and validation number is the same as without a
    test set, and only the test loss shows the poison."""
    train, validation = _regression()
    poisoned = (validation[0], np.full_like(validation[1], np.nan))
    common = dict(loss="mse", optimizers=["sgd", "adam"], epochs=2, seeds=1, verbose=0)
    clean = bench.compare(_mlp, train, validation, **common)
    dirty = bench.compare(_mlp, train, validation, test=poisoned, **common)
    assert [g["learning_rate"] for g in clean.grid if g["chosen"]] == [g["learning_rate"] for g in dirty.grid
                                                                          if g["chosen"]]
    for a, b in zip(clean.runs, dirty.runs):
        np.testing.assert_allclose(a["validation_loss"], b["validation_loss"], rtol=1e-5)
        assert "test_loss" not in a and math.isnan(b["test_loss"])


TASK_MODULE = '''
import numpy as np
import keras


def task():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int32")
    build = lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    return dict(build_model=build, train=(x[:128], y[:128]), validation=(x[128:], y[128:]),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"], epochs=2, name="signs")


def not_a_dict():
    return [1, 2]
'''


def test_cli_runs_a_user_task_given_as_module_function(tmp_path):
    (tmp_path / "my_task.py").write_text(TASK_MODULE)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "keras_optzoo.bench", "--backend", BACKEND, "--optimizers", "adam,soap",
               "--seeds", "1", "--out", str(out)]
    proc = subprocess.run(command + ["--task", "my_task:task"], capture_output=True, text=True, cwd=tmp_path,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    import csv

    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["task"], r["optimizer"]) for r in rows] == [("signs", "adam"), ("signs", "soap")]
    assert all(0 <= float(r["final_validation_accuracy_pct"]) <= 100 for r in rows)
    assert "signs (keras_optzoo.bench.compare)" in (out / "results.md").read_text()
    bad = subprocess.run(command + ["--task", "my_task:not_a_dict"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=600)
    assert bad.returncode == 2 and "must return a dict of keras_optzoo.bench.compare's arguments" in bad.stderr
