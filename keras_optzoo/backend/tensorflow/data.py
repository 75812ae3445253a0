"""TensorFlow: in-memory arrays as a tf.data pipeline that is cheap to iterate.

`model.fit(x, y)` on arrays builds Keras's own tf.data pipeline, and TF makes
a new iterator for it every epoch (training and validation), applying
tf.data's static graph optimisations each time: about 13 ms per iterator on
2 CPU cores, more than a small model's whole epoch (Karate's GCN: 6 steps
of 4 ms). The pipeline below has those optimisations turned off; the
benchmark's Trainer uses it for plain (x, y) arrays on TensorFlow, and the
other backends iterate NumPy arrays without that cost.
"""

import tensorflow as tf


def array_batches(x, y, batch_size, shuffle=False, seed=None):
    """(x, y) (two NumPy arrays with the same first dimension) in batches of
    `batch_size`, the last one partial as in `fit`; with `shuffle`, in a new
    order every epoch drawn from `seed`."""
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.experimental_optimization.apply_default_optimizations = False
    options.autotune.enabled = False
    return data.batch(batch_size).with_options(options)
