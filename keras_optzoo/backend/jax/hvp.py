"""JAX: Hessian-vector products as forward-over-reverse (`jax.jvp` of
`jax.grad`) over `model.stateless_call`."""

import jax
import jax.numpy as jnp

from keras_optzoo.backend._common import check_scalar


class HessianProgram:
    """The loss of `model` under `loss_fn`, its gradient and HVPs, compiled
    once: the weights, the batch and the vectors are arguments of the jitted
    functions, so every later evaluation (new weights, same shapes) reuses the
    compiled XLA programs."""

    def __init__(self, model, loss_fn):
        self.model = model

        def loss_of(trainable, non_trainable, x, y):
            y_pred, _, losses = model.stateless_call(trainable, non_trainable, x, training=False, return_losses=True)
            loss = check_scalar(loss_fn(y, y_pred))
            return loss + sum((jnp.asarray(l, loss.dtype) for l in losses), jnp.zeros((), loss.dtype))

        grad = jax.grad(loss_of)
        self._value_and_grad = jax.jit(jax.value_and_grad(loss_of))
        self._hvp = jax.jit(
            lambda t, nt, x, y, vectors: jax.jvp(lambda w: grad(w, nt, x, y), (t,), (vectors,))[1]
        )

    def evaluate(self, x, y):
        """(loss, grads, hvp) at the model's current weights and (x, y)."""
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        loss, grads = self._value_and_grad(trainable, non_trainable, x, y)

        def hvp(vectors):
            vectors = [jnp.asarray(v, t.dtype) for v, t in zip(vectors, trainable)]
            return self._hvp(trainable, non_trainable, x, y, vectors)

        return loss, grads, hvp


def rademacher(variables, seed, step):
    """+-1 probes shaped like `variables`, a function of (seed, step)."""
    key = jax.random.fold_in(jax.random.key(seed), jnp.asarray(step, jnp.uint32))
    keys = jax.random.split(key, len(variables))
    return [jax.random.rademacher(k, tuple(v.shape), dtype=v.dtype) for k, v in zip(keys, variables)]
