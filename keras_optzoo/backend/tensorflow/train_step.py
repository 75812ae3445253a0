"""TensorFlow: the train step of `with_curvature` models."""

import contextlib

import tensorflow as tf

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend import _common
from keras_optzoo.backend.tensorflow.hvp import Oracle, dense
from keras_optzoo.backend.tensorflow.hvp_moments import exact_moments
from keras_optzoo.backend.tensorflow.kernels import cond_effects


@contextlib.contextmanager
def _nothing():
    yield None


def _replica_sum(tensors):
    context = tf.distribute.get_replica_context()
    return list(context.all_reduce(tf.distribute.ReduceOp.SUM, list(tensors)))


# `fit` runs this step traced (compiled), so no Python-side step count is kept.
HOST_STEPS = False


def train_step(model, data, curvature):
    """Keras's train step plus, before the update, `curvature(...)` written
    into the optimizer's curvature slots, on refresh steps only (inside the
    refresh branch of a cond, so a step that does not refresh runs no
    curvature work). The curvature's derivatives come from an `Oracle`:
    traced into a graph, of this step's own pass (recorded by a persistent
    tape); eagerly, under tf.distribute or a loss scale, of this step's loss
    evaluated again, statelessly, inside the branch. Traced with batch
    statistics whose Hessian is right (`hvp_moments`)."""
    with exact_moments():
        return _train_step(model, data, curvature)


def _train_step(model, data, curvature):
    outer, opt = _common.optimizers_of(model)
    x, y, sample_weight = _common.unpack(data)
    context = tf.distribute.get_replica_context()
    distributed = context is not None and context.num_replicas_in_sync > 1
    # The HVPs come from this pass, recorded by a persistent tape, when the
    # step refreshes every time (interval 1, Newton) or is traced into a
    # graph (`fit`'s tf.function): there the tape costs nothing at run time
    # and the refresh branch differentiates the step's own gradient instead
    # of running the forward and backward passes again (eagerly, a
    # persistent tape would hold every intermediate on every step). Not
    # under tf.distribute (the replica sums sit outside the cond) or a loss
    # scale (whose scaled second derivatives overflow in float16).
    reuse = (curvature.always or tf.inside_function()) and not distributed and not _common.scales_loss(outer)
    # The state the forward pass starts from (dropout seeds, moving
    # statistics), read before it, for an oracle that evaluates the loss again.
    again = not reuse or "loss_at" in curvature.needs
    before = [tf.identity(v.value) for v in model.non_trainable_variables] if again else []
    with tf.control_dependencies(before), (tf.GradientTape(persistent=True) if reuse else _nothing()) as second:
        with tf.GradientTape() as tape:
            y_pred = model(x, training=True)
            loss = compat.compute_loss(model, x, y, y_pred, sample_weight)
            compat.track_loss(model, loss, x)
            scaled = outer.scale_loss(loss)
        variables = model.trainable_weights  # after the forward pass, which builds a subclassed model
        if not outer.built:
            outer.build(variables)
        # Dense gradients: the second-order updates (and their HVPs) are dense,
        # so an Embedding's IndexedSlices gradient becomes a dense tensor here,
        # with its variable's static shape (lost when a partial batch retraces
        # the step with an unknown batch size; the probes need it).
        grads = [g if g is None else tf.ensure_shape(dense(g), v.shape)
                 for g, v in zip(tape.gradient(scaled, variables), variables)]
    slots = opt.curvature_slots()
    # The curvature comes from the unscaled loss (the HVP of the loss itself).
    curvature_grads = _common.unscaled(outer, grads, lambda: outer.scale_loss(tf.ones((), grads[0].dtype)))
    # Under tf.distribute each replica sees its share of the batch, and Keras
    # scales each replica's loss by 1 / replicas: the global HVP (and
    # gradient) is the sum over replicas, which keeps the Hutchinson
    # estimates and the CG solve equal to single-device training.
    oracle = Oracle(model, (x, y, sample_weight), before, curvature_grads, loss)
    if reuse:
        oracle.reuse(second, [v.value for v in variables], grads, y_pred)
    previous = [s.value for s in slots]

    def write(values):
        for slot, value in zip(slots, values):
            slot.assign(value)

    def apply():
        outer.apply_gradients(zip(grads, variables))

    if distributed or curvature.always:
        write(curvature(oracle, opt.iterations, previous, replica_sum=_replica_sum if distributed else None))
        apply()
    else:
        # One cond: a refresh writes the slots and updates with the curvature
        # averages; the other steps copy nothing and update without them
        # (`no_refresh`: no pass over the curvature or its average).
        step = opt.iterations

        def refresh():
            write(curvature.compute(oracle, step, previous))
            apply()

        def plain():
            with opt.no_refresh():
                apply()

        cond_effects(opt.is_refresh(step), refresh, plain)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
