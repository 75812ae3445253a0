"""JAX: Hessian-vector products as forward-over-reverse (`jax.jvp` of
`jax.grad`) over `model.stateless_call`."""

import jax
import jax.numpy as jnp

from keras_optzoo.backend._common import check_scalar, signs, words_for


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

    def evaluate(self, x, y, gradient=True):
        """(loss, grads, hvp) at the model's current weights and (x, y);
        loss and grads None (neither compiled nor run) without `gradient`."""
        trainable = [v.value for v in self.model.trainable_variables]
        non_trainable = [v.value for v in self.model.non_trainable_variables]
        loss, grads = self._value_and_grad(trainable, non_trainable, x, y) if gradient else (None, None)

        def hvp(vectors):
            vectors = [jnp.asarray(v, t.dtype) for v, t in zip(vectors, trainable)]
            return self._hvp(trainable, non_trainable, x, y, vectors)

        return loss, grads, hvp


def dense(gradient):
    """JAX gradients are always dense."""
    return gradient


def output_grad(fn, y):
    """The gradient of the scalar `fn(y)` with respect to the array `y`."""
    return jax.grad(fn)(jax.lax.stop_gradient(y))


def output_hvp(fn, y, v):
    """The Hessian of the scalar `fn(y)` with respect to `y`, times `v`."""
    return jax.jvp(jax.grad(fn), (jax.lax.stop_gradient(y),), (jnp.asarray(v, y.dtype),))[1]


class Oracle:
    """The derivatives of one train step's loss that a curvature estimate asks
    for. `loss_and_aux(trainable)` is Keras's stateless
    `compute_loss_and_updates` at the step's non-trainable state, so every
    derivative sees the step's dropout masks and batch statistics and none
    changes the model's state.

    needs "hessian": gradient and Hessian from one `jax.linearize` of the
    gradient (forward-over-reverse; each HVP then costs one tangent pass);
    needs "outputs": gradient, J^T u and J v from one `jax.vjp` of
    (loss, outputs) and its transpose. With a loss scale, the HVP is of the
    unscaled loss (a float16 tangent of the scaled loss overflows).
    """

    def __init__(self, loss_and_aux, trainable, targets, needs, unscale, scaling):
        self._loss_and_aux, self._trainable, self.targets = loss_and_aux, trainable, targets
        grad = jax.grad(loss_and_aux, has_aux=True)
        if "hessian" in needs and not scaling:
            self.scaled_grads, self._hvp, self.aux = jax.linearize(grad, trainable, has_aux=True)
        elif "outputs" in needs:
            def loss_and_outputs(t):
                loss, aux = loss_and_aux(t)
                return (loss, aux[1]), aux

            (loss, outputs), self._vjp, self.aux = jax.vjp(loss_and_outputs, trainable, has_aux=True)
            self.scaled_grads = self._vjp((jnp.ones_like(loss), jnp.zeros_like(outputs)))[0]
            self._jvp = jax.linear_transpose(lambda c: self._vjp(c)[0], (loss, outputs))
        else:
            self.scaled_grads, self.aux = grad(trainable)
        if "hessian" in needs and scaling:
            unscaled_grad = jax.grad(lambda t: loss_and_aux(t)[1][0])
            self._hvp = lambda v: jax.jvp(unscaled_grad, (trainable,), (v,))[1]
        self.grads = unscale(self.scaled_grads)
        self.loss, self.outputs = self.aux[0], self.aux[1]

    def hvp(self, vectors):
        return list(self._hvp([jnp.asarray(v, t.dtype) for v, t in zip(vectors, self._trainable)]))

    def vjp(self, cotangent):
        return list(self._vjp((jnp.zeros((), self.loss.dtype), cotangent))[0])

    def jvp(self, vectors):
        return self._jvp([jnp.asarray(v, t.dtype) for v, t in zip(vectors, self._trainable)])[0][1]

    def loss_at(self, deltas):
        return self._loss_and_aux([t + jnp.asarray(d, t.dtype) for t, d in zip(self._trainable, deltas)])[1][0]


def uniform(like, seed, step):
    """Uniform [0, 1) float32 numbers shaped like the array `like`, a function of (seed, step)."""
    key = jax.random.fold_in(jax.random.key(seed), jnp.asarray(step, jnp.uint32))
    return jax.random.uniform(key, jnp.shape(like), dtype=jnp.float32)


def rademacher(variables, seed, step):
    """+-1 probes shaped like `variables`, a function of (seed, step)."""
    key = jax.random.fold_in(jax.random.key(seed), jnp.asarray(step, jnp.uint32))
    keys = jax.random.split(key, len(variables))
    out = []
    for k, v in zip(keys, variables):
        words = jax.lax.bitcast_convert_type(jax.random.bits(k, (words_for(v.shape),), jnp.uint32), jnp.int32)
        out.append(signs(words, tuple(v.shape), v.dtype))
    return out
