"""CurvatureLogger against the exact Hessian, its keys in History and
CSVLogger, and every optimizer following a learning-rate schedule."""

import csv

import numpy as np
import pytest

import keras
import keras_optzoo as kz
from test_curvature import _data, _exact_hessian, _mlp


def test_logged_eigenvalues_and_trace_match_numpy(tmp_path):
    model = _mlp()
    x, y = _data()
    model.compile(optimizer=kz.SGD(0.1), loss="sparse_categorical_crossentropy")
    logger = kz.callbacks.CurvatureLogger(x, y, k=2, num_probes=400, lanczos_iterations=31)
    path = tmp_path / "log.csv"
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False,
                        callbacks=[logger, keras.callbacks.CSVLogger(str(path))])
    hess, _ = _exact_hessian(model, x, y)  # at the final weights, where the last row was logged
    eig = np.sort(np.linalg.eigvalsh(hess))[::-1]
    h = history.history
    np.testing.assert_allclose([h["hessian_top_eig_1"][-1], h["hessian_top_eig_2"][-1]], eig[:2], rtol=1e-3, atol=1e-5)
    assert abs(h["hessian_trace"][-1] - np.trace(hess)) < 0.1 * abs(np.trace(hess))
    np.testing.assert_allclose(h["eos_ratio"][-1], eig[0] * 0.1 / 2, rtol=1e-3)
    assert h["grad_norm"][-1] > 0
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 2
    for key in ("hessian_top_eig_1", "hessian_top_eig_2", "hessian_trace", "grad_norm", "eos_ratio"):
        assert key in rows[0] and np.isfinite(float(rows[-1][key]))


def test_every_n_steps_and_bad_arguments():
    model = _mlp()
    x, y = _data()
    model.compile(optimizer=kz.Adam(0.01), loss="sparse_categorical_crossentropy")
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append("hessian_trace" in logs)

    logger = kz.callbacks.CurvatureLogger(x, y, every=3, unit="step", num_probes=2, lanczos_iterations=4)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[logger, Spy()])
    assert seen == [(i + 1) % 3 == 0 for i in range(8)]
    for kwargs, word in [({"every": 0}, "every"), ({"k": 0}, "k"), ({"num_probes": -1}, "num_probes"),
                         ({"unit": "batch"}, "unit"), ({"k": 5, "lanczos_iterations": 3}, "lanczos_iterations")]:
        with pytest.raises(ValueError, match=word):
            kz.callbacks.CurvatureLogger(x, y, **kwargs)


def test_every_epoch_gets_every_key_nan_where_not_measured(tmp_path):
    """every=2 over 3 epochs: History and CSVLogger have 3 rows and all the
    columns from the first epoch; epochs 1 and 3 hold NaN, epoch 2 the
    Hessian's top eigenvalue at that epoch's end."""
    model = _mlp()
    x, y = _data()
    model.compile(optimizer=kz.SGD(0.1), loss="sparse_categorical_crossentropy")
    path = tmp_path / "log.csv"
    eigs = []

    class AtEpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            eigs.append(np.linalg.eigvalsh(_exact_hessian(self.model, x, y)[0])[-1])

    logger = kz.callbacks.CurvatureLogger(x, y, every=2, num_probes=2, lanczos_iterations=31)
    h = model.fit(x, y, batch_size=8, epochs=3, verbose=0, shuffle=False,
                  callbacks=[logger, AtEpochEnd(), keras.callbacks.CSVLogger(str(path))]).history
    for key in logger.keys:
        assert len(h[key]) == 3 and np.isnan(h[key][0]) and np.isnan(h[key][2]) and np.isfinite(h[key][1])
    np.testing.assert_allclose(h["hessian_top_eig_1"][1], eigs[1], rtol=1e-3)
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 3 and set(logger.keys) <= set(rows[0])
    assert rows[0]["hessian_trace"] == "nan" and np.isfinite(float(rows[1]["hessian_trace"]))


def test_step_unit_values_reach_history_and_the_steps_record():
    """unit="step", every=3, 8 steps in 2 epochs: measurements at steps 3, 6
    (epoch 1: steps 1-4; epoch 2: 5-8); History's rows hold the last of each
    epoch; `steps` keeps all of them; a new fit starts a new record."""
    model = _mlp()
    x, y = _data()
    model.compile(optimizer=kz.Adam(0.01), loss="sparse_categorical_crossentropy")
    logger = kz.callbacks.CurvatureLogger(x, y, every=3, unit="step", num_probes=2, lanczos_iterations=4)
    h = model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[logger]).history
    assert [s["step"] for s in logger.steps] == [3, 6]
    assert h["hessian_trace"] == [logger.steps[0]["hessian_trace"], logger.steps[1]["hessian_trace"]]
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[logger])
    assert [s["step"] for s in logger.steps] == [3]


def _schedule():
    return keras.optimizers.schedules.PiecewiseConstantDecay([2, 4], [0.05, 0.02, 0.005])


@pytest.mark.parametrize("cls", kz.optimizers.ALL_OPTIMIZERS, ids=lambda c: c.__name__)
def test_every_optimizer_applies_the_schedule_value_at_each_step(cls):
    """A scheduled run equals a run whose constant learning rate is set, before
    each step, to the schedule's value at that step."""
    rng = np.random.default_rng(0)
    init = [rng.standard_normal(s).astype("float32") for s in [(3,), (2, 2)]]
    steps = [[rng.standard_normal(v.shape).astype("float32") for v in init] for _ in range(6)]
    curv = [[np.abs(rng.standard_normal(v.shape)).astype("float32") + 0.5 for v in init] for _ in range(6)]
    schedule = _schedule()
    runs = []
    for scheduled in (True, False):
        opt = cls(learning_rate=_schedule() if scheduled else 0.05)
        variables = [keras.Variable(v) for v in init]
        opt.build(variables)
        for t, (g, d) in enumerate(zip(steps, curv)):
            if not scheduled:
                opt.learning_rate = float(keras.ops.convert_to_numpy(schedule(t)))
            if hasattr(opt, "set_curvature"):
                opt.set_curvature(d)
            opt.apply([keras.ops.convert_to_tensor(a) for a in g], variables)
        runs.append([keras.ops.convert_to_numpy(v) for v in variables])
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_a_compiled_probability_loss_on_a_logits_model_is_refused_with_the_fix():
    """The compiled Loss instance reaches Hessian's logits check (it used to be
    wrapped in a function, which the check cannot read, and every number came
    out plausible and wrong)."""
    keras.utils.set_random_seed(0)
    x, y = _data()
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(3)])  # logits
    model.compile(optimizer=kz.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy())
    logger = kz.callbacks.CurvatureLogger(x, y, k=1, lanczos_iterations=4)
    with pytest.raises(ValueError, match=r"SparseCategoricalCrossentropy\(from_logits=True\)"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    model.compile(optimizer=kz.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=1, verbose=0, callbacks=[kz.callbacks.CurvatureLogger(x, y, k=1)])
    expected = kz.curvature.Hessian(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), x, y)
    np.testing.assert_allclose(history.history["hessian_top_eig_1"][-1], expected.top_eigenvalues(1)[0], rtol=1e-3)
