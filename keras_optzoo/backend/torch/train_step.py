"""torch: the train step of `with_curvature` models."""

import contextlib

import torch

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend import _common
from keras_optzoo.backend.torch import twice_differentiable
from keras_optzoo.backend.torch.hvp import Oracle


# `fit` runs this step eagerly, so refreshes are decided on the host.
HOST_STEPS = True


def train_step(model, data, curvature):
    """Keras's torch train step; on refresh steps (decided from the
    optimizer's host-side step count, so no device read) the gradient comes
    from an `Oracle` over the same forward pass and `curvature.compute(...)`
    is written into the optimizer's curvature slots before the update."""
    outer, opt = _common.optimizers_of(model)
    x, y, sample_weight = _common.unpack(data)
    step = opt.host_step()
    refresh = curvature.always or opt.is_refresh(step)
    # The state the forward pass starts from, for `loss_at` (Newton's damping).
    before = rng = None
    if refresh and "loss_at" in curvature.needs:
        before = [v.value.clone() for v in model.non_trainable_variables]
        # Keras's torch Dropout without a seed draws from torch's global
        # generator, not from a SeedGenerator state: keep the generator's
        # state too, so that `loss_at` sees this step's dropout masks.
        rng = replaying_generators()
    with twice_differentiable() if refresh else contextlib.nullcontext():
        y_pred = model(x, training=True)
    model.zero_grad()
    loss = compat.compute_loss(model, x, y, y_pred, sample_weight)
    compat.track_loss(model, loss, x)
    scaled = outer.scale_loss(loss)
    variables = model.trainable_weights[:]
    if not outer.built:
        outer.build(variables)
    params = [v.value for v in variables]
    if refresh:
        # The curvature is that of the unscaled loss, as on TensorFlow and JAX
        # (a float16 HVP of the scaled loss overflows); the gradients handed
        # to the optimizer are scaled back, for it (or its LossScaleOptimizer)
        # to unscale.
        oracle = Oracle(model, (x, y, sample_weight), before, loss, y_pred, params, curvature.needs, rng)
        slots = opt.curvature_slots()
        new = curvature.compute(oracle, step, [s.value for s in slots])
        with torch.no_grad():
            for slot, value in zip(slots, new):
                slot.assign(value.detach())
        grads = oracle.grads
        del oracle
        if _common.scales_loss(outer):
            scale = float(outer.scale_loss(1.0))
            grads = [g * scale for g in grads]
    else:
        grads = list(torch.autograd.grad(scaled, params))
    with torch.no_grad():
        outer.apply(grads, variables)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


def replaying_generators():
    """A context factory: inside each context torch's global generators (CPU
    and every initialised CUDA device) start from their state at this call,
    and are put back as they were after it (Keras's unseeded torch Dropout
    draws from them)."""
    cuda = range(torch.cuda.device_count()) if torch.cuda.is_initialized() else ()
    cpu, states = torch.get_rng_state(), [torch.cuda.get_rng_state(i) for i in cuda]

    @contextlib.contextmanager
    def replay():
        with torch.random.fork_rng(devices=list(cuda)):
            torch.set_rng_state(cpu)
            for device, state in zip(cuda, states):
                torch.cuda.set_rng_state(state, device)
            yield

    return replay
