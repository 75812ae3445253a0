"""CurvatureLogger's values as TensorBoard scalars (read back from the event
file) and CSVLogger columns, on a model whose Hessian is known in closed form:
linear least squares, loss = mean((x w + b - y)^2), so H = (2/n) A^T A with
A = [x, 1], whatever the weights. The columns of x are orthogonal and
zero-mean, so H is diagonal, with eigenvalues EIGS for w and 2 for b."""

import csv
import glob

import numpy as np
import pytest

import keras
import keras_optzoo as kz

tf = pytest.importorskip("tensorflow", reason="keras.callbacks.TensorBoard writes through tf.summary; tensorflow is not installed")

N, EIGS, LR, EPOCHS = 32, np.array([8.0, 5.0, 3.0, 1.0]), 0.05, 3
KEYS = ("hessian_top_eig_1", "hessian_top_eig_2", "hessian_trace", "grad_norm", "eos_ratio")


def _problem():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(np.column_stack([np.ones(N), rng.standard_normal((N, len(EIGS)))]))
    x = q[:, 1:] * np.sqrt(EIGS * N / 2)  # orthogonal to the ones column: zero-mean
    y = x @ rng.standard_normal(len(EIGS)) + 0.3 * rng.standard_normal(N)
    return x.astype("float32"), y[:, None].astype("float32")


def _tensorboard_scalars(log_dir):
    scalars = {}
    for path in glob.glob(f"{log_dir}/train/events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if not value.tag.startswith("epoch_"):  # the model's config is a string summary
                    continue
                scalars.setdefault(value.tag, []).append((event.step, float(tf.make_ndarray(value.tensor))))
    return scalars


def test_curvature_logger_values_reach_tensorboard_and_csvlogger(tmp_path):
    x, y = _problem()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((len(EIGS),)), keras.layers.Dense(1)])
    model.compile(optimizer=kz.SGD(LR), loss="mse")
    logger = kz.callbacks.CurvatureLogger(x, y, k=2, num_probes=3, lanczos_iterations=5)
    csv_path, log_dir = tmp_path / "log.csv", tmp_path / "tb"
    history = model.fit(x, y, batch_size=8, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=[
        logger, keras.callbacks.CSVLogger(str(csv_path)), keras.callbacks.TensorBoard(str(log_dir))])
    h = history.history

    # The closed form: eigenvalues, trace (Hutchinson is exact on a diagonal
    # H), the edge-of-stability ratio, and the gradient at the final weights.
    for epoch in range(EPOCHS):
        np.testing.assert_allclose([h["hessian_top_eig_1"][epoch], h["hessian_top_eig_2"][epoch]], EIGS[:2], rtol=1e-4)
        np.testing.assert_allclose(h["hessian_trace"][epoch], EIGS.sum() + 2.0, rtol=1e-4)
        np.testing.assert_allclose(h["eos_ratio"][epoch], EIGS[0] * LR / 2, rtol=1e-4)
    w, b = model.get_weights()
    a = np.column_stack([x, np.ones(N)]).astype("float64")
    grad = 2.0 / N * a.T @ (a @ np.append(w[:, 0], b) - y[:, 0])
    np.testing.assert_allclose(h["grad_norm"][-1], np.linalg.norm(grad), rtol=1e-4)

    scalars = _tensorboard_scalars(log_dir)
    for key in KEYS:
        steps, values = zip(*sorted(scalars[f"epoch_{key}"]))
        assert steps == tuple(range(EPOCHS)), (key, steps)
        np.testing.assert_allclose(values, h[key], rtol=1e-6, err_msg=key)

    rows = list(csv.DictReader(open(csv_path)))
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    for key in KEYS:
        np.testing.assert_allclose([float(r[key]) for r in rows], h[key], rtol=1e-6, err_msg=key)
