"""Curvature of a small MNIST MLP: Hessian spectrum while training, and the
seed-000 Hybrid method through with_curvature.

    KERAS_BACKEND=jax python examples/curvature.py
"""

import keras

import keras_optzoo as kz
from keras_optzoo.tasks import mnist

(x, y), (x_test, y_test) = mnist.load_data()
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(64, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
print("top-3 Hessian eigenvalues at init:",
      kz.curvature.top_eigenvalues(model, "sparse_categorical_crossentropy", x[:256], y[:256], k=3))

model = kz.with_curvature(model)  # lets fit() feed Hessian estimates to second-order optimizers
model.compile(optimizer=kz.Hybrid(0.003, hessian_update_interval=10),
              loss="sparse_categorical_crossentropy", metrics=["accuracy"])
logger = kz.callbacks.CurvatureLogger(x[:256], y[:256], k=1, num_probes=10)
history = model.fit(x, y, batch_size=64, epochs=3, callbacks=[logger], verbose=2)
for epoch, (eig, trace, eos) in enumerate(zip(history.history["hessian_top_eig_1"],
                                              history.history["hessian_trace"], history.history["eos_ratio"])):
    print(f"epoch {epoch + 1}: top eigenvalue {eig:.3f}, trace {trace:.2f}, lr * top / 2 = {eos:.4f}")
print("test loss, accuracy:", model.evaluate(x_test, y_test, verbose=0))
