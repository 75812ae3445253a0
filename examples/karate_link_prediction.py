"""Link prediction on Zachary's Karate Club with a GCN, comparing three optimizers
under a step-decay learning-rate schedule (seed 002: halve the rate every 50 epochs).

    KERAS_BACKEND=torch python examples/karate_link_prediction.py
"""

import keras

import keras_optzoo as kz
from keras_optzoo.tasks import karate

split = karate.split_edges(seed=0)  # test edges are removed from the graph the GCN sees
steps_per_epoch = -(-len(split["x_train"]) // 16)
for name in ["sgd", "nesterov", "adam"]:
    keras.utils.set_random_seed(0)
    model = karate.build_model("gcn", split)
    optimizer = kz.get(name)
    optimizer.learning_rate = keras.optimizers.schedules.ExponentialDecay(
        0.01, decay_steps=50 * steps_per_epoch, decay_rate=0.5, staircase=True)  # step decay
    model.compile(optimizer=optimizer, loss=karate.LOSS,
                  metrics=["accuracy", keras.metrics.AUC(name="auc")])
    model.fit(split["x_train"], split["y_train"], batch_size=16, epochs=100, verbose=0)
    result = model.evaluate(split["x_test"], split["y_test"], verbose=0, return_dict=True)
    print(f"{name:>9}: test accuracy {result['accuracy']:.3f}, AUC {result['auc']:.3f}")
