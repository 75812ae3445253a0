"""PyTorch: Hessian-vector products by double backward on the variables' `.value` tensors.

(`torch.func.functional_call` on a Keras model gives zero gradients, so the
graph of the ordinary forward pass is differentiated twice instead.)
"""

import torch

import keras

from keras_optzoo.curvature import _steps


def _hvp_from(grads, params):
    def hvp(vectors):
        vectors = [torch.as_tensor(v, dtype=p.dtype, device=p.device) for v, p in zip(vectors, params)]
        return list(torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True))

    return hvp


def loss_and_hvp(model, loss_fn, x, y):
    params = [v.value for v in model.trainable_variables]
    loss = _steps.check_scalar(loss_fn(y, model(x, training=False)))
    for extra in model.losses:
        loss = loss + extra
    grads = torch.autograd.grad(loss, params, create_graph=True)
    return loss.detach(), [g.detach() for g in grads], _hvp_from(grads, params)


def rademacher(variables, seed, step):
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    out = []
    for v in variables:
        bits = torch.randint(0, 2, tuple(v.shape), generator=generator)
        out.append((2 * bits - 1).to(dtype=v.value.dtype, device=v.value.device))
    return out


def train_step(model, data):
    outer, opt = _steps.optimizers_of(model)
    x, y, sample_weight = _steps.unpack(data)
    y_pred = model(x, training=True)
    model.zero_grad()
    loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    model._loss_tracker.update_state(loss, sample_weight=_steps.batch_size(x))
    scaled = outer.scale_loss(loss)
    variables = model.trainable_weights[:]
    if not outer.built:
        outer.build(variables)
    params = [v.value for v in variables]
    step = int(opt.iterations)
    if step % opt.hessian_update_interval == 0:
        # The curvature is that of the unscaled loss, as on TensorFlow and JAX
        # (a float16 HVP of the scaled loss overflows); the gradients handed
        # to the optimizer are scaled back, for it (or its LossScaleOptimizer)
        # to unscale.
        graph_grads = torch.autograd.grad(loss, params, create_graph=True)
        unscaled = [g.detach() for g in graph_grads]
        scale = float(outer.scale_loss(1.0))
        grads = [g * scale for g in unscaled] if scale != 1.0 else unscaled
        slots = opt.curvature_slots()
        new = _steps.refreshed_curvature(
            opt, _hvp_from(graph_grads, params), unscaled, variables, step, [s.value for s in slots]
        )
        with torch.no_grad():
            for slot, value in zip(slots, new):
                slot.assign(value.detach())
        del graph_grads
    else:
        grads = list(torch.autograd.grad(scaled, params))
    opt.curvature_supplied = True
    with torch.no_grad():
        outer.apply(grads, variables)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


# -- fused update kernels ------------------------------------------------------
# Keras swaps in its own `_foreach` kernels only for its exact built-in classes,
# so a subclass runs one small kernel per variable. These run all variables in
# one call: torch's fused CPU/CUDA kernels where the algorithm has one and its
# state means the same as ours, `_foreach` ops otherwise.
_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# torch's fused optimizer kernels run on CPU from 2.4 on; before that (or if a
# kernel is missing) the keras.ops path runs.
_KERNELS = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_", "_fused_adagrad_", "_foreach_addcmul_")
_HAS_KERNELS = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4) and all(
    hasattr(torch, k) for k in _KERNELS
)


def _lr(learning_rate, device):
    """A float on CPU; on an accelerator a device tensor (no host sync)."""
    if device.type == "cpu" or not torch.is_tensor(learning_rate):
        return float(learning_rate)
    return learning_rate.to(device=device, dtype=torch.float32)


# Kinds whose kernel also applies Keras's decoupled weight decay.
DECAY_IN_KERNEL = {"adam"}


def _adam(optimizer, hp, variables, params, grads, step, lr):
    """Adam/AMSGrad; with weight_decay, torch's fused AdamW for the variables
    Keras would decay (theta *= 1 - lr wd before the step, as Keras does) and
    the plain kernel for those in `exclude_from_weight_decay`."""
    decay = optimizer.weight_decay or 0.0
    groups = {}
    for i, v in enumerate(variables):
        groups.setdefault(bool(decay) and optimizer._use_weight_decay(v), []).append(i)
    for decayed, index in groups.items():
        def pick(name):
            return [optimizer._slot(name, variables[i]).value for i in index]

        kernel = torch._fused_adamw_ if decayed else torch._fused_adam_
        kernel(
            [params[i] for i in index], [grads[i] for i in index], pick("momentum"), pick("velocity"),
            pick("velocity_max") if hp["amsgrad"] else [], [step] * len(index),
            lr=lr, beta1=hp["beta_1"], beta2=hp["beta_2"], weight_decay=float(decay) if decayed else 0.0,
            eps=hp["epsilon"], amsgrad=hp["amsgrad"], maximize=False,
        )  # fmt: skip


def fused_update(optimizer, spec, grads, variables, learning_rate):
    if not _HAS_KERNELS:
        return False
    params = [v.value for v in variables]
    dtype, device = params[0].dtype, params[0].device
    if dtype not in _FLOATS or any(p.dtype != dtype or p.device != device for p in params):
        return False  # mixed dtypes or devices: the per-variable keras.ops path
    grads = [torch.as_tensor(g).to(dtype=dtype, device=device) for g in grads]
    kind, hp = spec

    def slots(name):
        return [optimizer._slot(name, v).value for v in variables]

    with torch.no_grad():
        if kind == "adam" or kind == "adagrad":
            # (`iterations` is a tensor, not a variable, under gradient accumulation)
            iterations = torch.as_tensor(keras.ops.convert_to_tensor(optimizer.iterations))
            step = (iterations + 1).to(dtype=torch.float32, device=device)
            lr = _lr(learning_rate, device)
            if kind == "adam":
                _adam(optimizer, hp, variables, params, grads, step, lr)
            else:
                torch._fused_adagrad_(
                    params, grads, slots("accumulator"), [step] * len(params),
                    lr=lr, lr_decay=0.0, weight_decay=0.0, eps=hp["epsilon"], maximize=False,
                )  # fmt: skip
            return True
        lr = float(learning_rate)
        if kind == "sgd":
            torch._foreach_add_(params, grads, alpha=-lr)
        elif kind in ("momentum", "nesterov") and hp["momentum"] == 0.0:
            # (torch's fused SGD refuses momentum buffers at momentum 0) v <- lr g
            velocity = slots("velocity")
            torch._foreach_mul_(velocity, 0.0)
            torch._foreach_add_(velocity, grads, alpha=lr)
            torch._foreach_sub_(params, velocity)
        elif kind == "momentum":
            # v <- mu v + lr g; theta <- theta - v: torch's buffer update with
            # dampening 1 - lr and a unit step size.
            torch._fused_sgd_(
                params, grads, slots("velocity"), weight_decay=0.0, momentum=hp["momentum"], lr=1.0,
                dampening=1.0 - lr, nesterov=False, maximize=False, is_first_step=False,
            )  # fmt: skip
        elif kind == "nesterov":
            # With s = lr g: u <- mu u + s; theta <- theta - (s + mu u), which
            # is torch's Nesterov step with gradient s and a unit step size.
            scaled = torch._foreach_mul(grads, lr)
            torch._fused_sgd_(
                params, scaled, slots("velocity"), weight_decay=0.0, momentum=hp["momentum"], lr=1.0,
                dampening=0.0, nesterov=True, maximize=False, is_first_step=False,
            )  # fmt: skip
        elif kind == "rmsprop":
            velocity = slots("velocity")
            torch._foreach_mul_(velocity, hp["rho"])
            torch._foreach_addcmul_(velocity, grads, grads, value=1.0 - hp["rho"])
            denom = torch._foreach_sqrt(velocity)
            torch._foreach_add_(denom, hp["epsilon"])
            torch._foreach_addcdiv_(params, grads, denom, value=-lr)
        else:
            return False
    return True


def fused_update_one(optimizer, spec, gradient, variable, learning_rate):
    return False  # torch updates all variables at once in fused_update


def cond_effects(pred, true_fn, false_fn):
    """Runs one of two side-effecting branches (eager: a Python if)."""
    (true_fn if bool(pred) else false_fn)()
