"""The bottom layer: the only code that imports tensorflow, jax or torch.

One subpackage per backend, one module per job (as Keras splits
`backend/<name>/{core,trainer,optimizer}.py`):

- `hvp`: `HessianProgram(model, loss_fn)` with `.evaluate(x, y, gradient=True)
  -> (loss, grads, hvp)` (the loss at training=False plus the model's
  regularization losses, at the current weights; `hvp(vectors) -> H @
  vectors`; loss and grads may be None with gradient=False, where the
  backend's HVP does not need them), and
  `rademacher(variables, seed, step)`, the +-1 probes of every Hutchinson
  estimate in the package;
  `uniform(like, seed, step)` (label sampling of Sophia-G),
  `keep_finite(new, previous)` and `multiply_into(temporaries, factors)`
  (torch's own; elsewhere `_common`'s), `dense(g)`
  (TensorFlow's IndexedSlices to a tensor), and `output_grad(fn, y)` /
  `output_hvp(fn, y, v)`, derivatives of a scalar function of the model's
  outputs (the loss's Hessian in output space for Gauss-Newton products);
- `train_step`: `train_step(model, *args, curvature)`, the train step of
  `keras_optzoo.with_curvature` models. It talks to the optimizer only through
  the `SecondOrderOptimizer` contract (`curvature_slots()`,
  `is_refresh(step)`, `host_step()`, `no_refresh()`) and gets what to compute from the
  `curvature` object (`keras_optzoo.curvature.CurvatureUpdate`: `needs`,
  `always`, `compute(oracle, step, previous)`). What it hands `compute` is
  an `Oracle` of the step's own loss (the same dropout masks and batch
  statistics as the gradient, no second update of moving statistics):
  `grads`, `loss`, `outputs`, `hvp(v)` (H v), `vjp(u)` (J^T u), `jvp(v)`
  (J v, J the Jacobian of the outputs) and `loss_at(deltas)` (the step's
  loss at weights + deltas); on JAX also `make_train_function(model,
  curvature)`, a refresh program and a plain one chosen per step;
- `kernels`: `KERNELS`, a table kind -> fused update kernel (one small
  function per algorithm), `DECAY_IN_KERNEL`, `cond_effects`, and on JAX
  `cond_values` (elsewhere `keras.ops.cond`);
- `data` (TensorFlow only): `array_batches(x, y, batch_size, shuffle,
  seed)`, arrays as a tf.data pipeline cheap to iterate every epoch; the
  benchmark uses it where it is not None;
- `dot(xs, ys)`: the inner product of two lists of tensors, in keras.ops;
- `optimizers_of(model)`: (the optimizer that applies, the second-order one
  inside it), which differ under a LossScaleOptimizer.

This package imports nothing of keras_optzoo but `_keras_compat` and its own
`_common`; everything above it (optimizers, curvature, callbacks) imports it.
"""

import keras

from keras_optzoo.backend import _common
from keras_optzoo.backend._common import dot, optimizers_of

_NAME = keras.backend.backend()
if _NAME == "tensorflow":
    from keras_optzoo.backend.tensorflow import hvp, kernels, train_step as _train_step
    from keras_optzoo.backend.tensorflow.data import array_batches
elif _NAME == "jax":
    from keras_optzoo.backend.jax import hvp, kernels, train_step as _train_step
    array_batches = None  # Keras iterates NumPy arrays on JAX without a per-epoch pipeline
elif _NAME == "torch":
    from keras_optzoo.backend.torch import hvp, kernels, train_step as _train_step
    array_batches = None
else:
    raise ImportError(
        f"keras_optzoo supports the tensorflow, jax and torch Keras backends; "
        f"KERAS_BACKEND is {_NAME!r}. Set KERAS_BACKEND to one of those."
    )

HessianProgram = hvp.HessianProgram
rademacher = hvp.rademacher
uniform = hvp.uniform
dense = hvp.dense
output_grad = hvp.output_grad
output_hvp = hvp.output_hvp
keep_finite = getattr(hvp, "keep_finite", _common.keep_finite)
multiply_into = getattr(hvp, "multiply_into", _common.multiply_into)
train_step = _train_step.train_step
# JAX: `fit`'s train function for models refreshed every k > 1 steps (two
# programs chosen on the host); None on the other backends.
make_train_function = getattr(_train_step, "make_train_function", None)
# Whether `fit` runs the update eagerly in Python (torch), so that an
# optimizer can count steps on the host instead of reading `iterations`.
HOST_STEPS = _train_step.HOST_STEPS
KERNELS = kernels.KERNELS
DECAY_IN_KERNEL = kernels.DECAY_IN_KERNEL
cond_effects = kernels.cond_effects
# One of two pure branches' results (a traced cond where the step is traced).
cond_values = getattr(kernels, "cond_values", keras.ops.cond)


def fused_update(optimizer, spec, grads, variables, learning_rate):
    """Every variable through the backend's kernel for `spec = (kind,
    hyperparameters)` in one call (torch); False where there is none."""
    kernel = KERNELS.get(spec[0]) if kernels.ALL_AT_ONCE else None
    return kernel is not None and kernels.run_all(kernel, optimizer, spec[1], grads, variables, learning_rate)


def fused_update_one(optimizer, spec, gradient, variable, learning_rate):
    """One variable through the backend's kernel (TensorFlow); False where there is none."""
    kernel = None if kernels.ALL_AT_ONCE else KERNELS.get(spec[0])
    return kernel is not None and kernels.run_one(kernel, optimizer, spec[1], gradient, variable, learning_rate)
