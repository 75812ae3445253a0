"""The only place that imports tensorflow, jax or torch.

Each backend module provides:
- `loss_and_hvp(model, loss_fn, x, y)`: the scalar training loss (with the
  model's regularization losses), its gradients and an HVP oracle at (x, y);
- `rademacher(variables, seed, step)`: +-1 probes shaped like `variables`;
- `train_step`: the `train_step` of `keras_optzoo.with_curvature` models;
- `fused_update(optimizer, spec, grads, variables, lr)` and
  `fused_update_one(optimizer, spec, grad, variable, lr)`: run a first-order
  update through the backend's own kernels (all variables at once, or one),
  returning False where there is none (the keras.ops path runs instead);
- `cond_effects(pred, true_fn, false_fn)`: run one of two branches that
  assign to variables (skip_nonfinite).
"""

import keras

_NAME = keras.backend.backend()
if _NAME == "tensorflow":
    from keras_optzoo.backend import tensorflow as impl
elif _NAME == "jax":
    from keras_optzoo.backend import jax as impl
elif _NAME == "torch":
    from keras_optzoo.backend import torch as impl
else:
    raise ImportError(
        f"keras_optzoo supports the tensorflow, jax and torch Keras backends; "
        f"KERAS_BACKEND is {_NAME!r}. Set KERAS_BACKEND to one of those."
    )

loss_and_hvp = impl.loss_and_hvp
rademacher = impl.rademacher
train_step = impl.train_step
DECAY_IN_KERNEL = impl.DECAY_IN_KERNEL
fused_update = impl.fused_update
fused_update_one = impl.fused_update_one
cond_effects = impl.cond_effects
