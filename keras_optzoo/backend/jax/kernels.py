"""JAX: update kernels. XLA already fuses each variable's keras.ops update
into one loop, so the table is empty and the keras.ops code always runs
(measured: docs/performance.md)."""

import jax

# kind -> kernel; see keras_optzoo/backend/__init__.py for the signature.
KERNELS = {}
# Kinds whose kernel also applies the decoupled weight decay: none here.
DECAY_IN_KERNEL = frozenset()
# Whether the kernels take all variables at once (torch) or one (TensorFlow).
ALL_AT_ONCE = True


def cond_effects(pred, true_fn, false_fn):
    """Runs one of two side-effecting branches. JAX variables change only
    eagerly, so `pred` must be concrete; inside jit, Keras trains through
    `stateless_apply`, which selects with `lax.cond` instead."""
    if isinstance(pred, jax.core.Tracer):
        raise RuntimeError(
            "skip_nonfinite: `optimizer.apply` was called inside a traced JAX function; use "
            "`optimizer.stateless_apply` there (as model.fit does) or call `apply` eagerly."
        )
    (true_fn if bool(pred) else false_fn)()


def cond_values(pred, true_fn, false_fn):
    """One of two pure branches' results: `lax.cond` under a trace, a Python
    `if` on a concrete `pred` (eager `lax.cond` traces both branches on every
    call: SOAP's eager `apply` took 1 s a step that way)."""
    if isinstance(pred, jax.core.Tracer):
        return jax.lax.cond(pred, true_fn, false_fn)
    return true_fn() if bool(pred) else false_fn()
