"""Train seed 001's MNIST MLP (784-500-10) with AMSGrad and stop adaptively.

    KERAS_BACKEND=jax python examples/mnist.py
"""

import keras

import keras_optzoo as kz
from keras_optzoo.tasks import mnist

(x_train, y_train), (x_test, y_test) = mnist.load_data()  # downloads, or the embedded 10k files offline
model = mnist.mlp(hidden_activation="relu", regularization="l2")
model.compile(optimizer=kz.AMSGrad(0.001), loss=mnist.LOSS, metrics=["accuracy"])
# Seed 002: cosine annealing is Keras's own schedule, passed as the learning rate.
model.optimizer.learning_rate = keras.optimizers.schedules.CosineDecay(0.001, decay_steps=2000)
stop = kz.callbacks.AdaptiveStopping(monitor="val_loss", threshold=1e-3, patience=1)
model.fit(x_train, y_train, batch_size=64, epochs=20, validation_split=0.1, callbacks=[stop], verbose=2)
print("converged at epoch", stop.converged_epoch)
print("test loss, accuracy:", model.evaluate(x_test, y_test, verbose=0))
