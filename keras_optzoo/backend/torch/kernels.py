"""torch: update kernels.

Keras swaps in its own `_foreach` kernels only for its exact built-in classes,
so a subclass runs one small kernel per variable. These update all variables
in one call: torch's fused CPU/CUDA kernels where the algorithm has one and
its state means the same as ours, `_foreach` ops otherwise. Each is
`kernel(optimizer, hp, variables, params, grads, lr)` (params: the variables'
tensors), found by kind in `KERNELS`; returning False hands the step back to
the keras.ops code.
"""

import math

import numpy as np
import torch

import keras

from keras_optzoo import _keras_compat as compat

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# torch's fused optimizer kernels run on CPU from 2.4 on; before that (or if a
# kernel is missing) the keras.ops path runs.
_NEEDED = ("_fused_adam_", "_fused_adamw_", "_fused_sgd_", "_fused_adagrad_", "_foreach_addcmul_")
_HAS_KERNELS = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4) and all(
    hasattr(torch, k) for k in _NEEDED
)
# Kinds whose kernel also applies Keras's decoupled weight decay.
DECAY_IN_KERNEL = frozenset({"adam"})
# Whether the kernels take all variables at once (torch) or one (TensorFlow).
ALL_AT_ONCE = True


def _lr(learning_rate, device):
    """A float on CPU; on an accelerator a device tensor (no host sync)."""
    if device.type == "cpu" or not torch.is_tensor(learning_rate):
        return float(learning_rate)
    return learning_rate.to(device=device, dtype=torch.float32)


def _slots(optimizer, name, variables):
    if name == "curvature":  # a second-order optimizer's curvature input
        return [optimizer._curvature_of(v).value for v in variables]
    return [optimizer._slot(name, v).value for v in variables]


# `_foreach` kernels make one pass over all variables per op. On a CPU the
# variables' memory then streams through the caches once per op, and a
# per-variable loop (torch.optim's foreach=False) is faster for large
# tensors: RMSprop at 4M parameters, 2-core CPU, ran 1.5x torch's for-loop
# with one `_foreach` call over all variables. So on CPU the ops run on
# groups of consecutive variables of about _GROUP_ELEMENTS elements (large
# tensors alone, small ones batched, which keeps the per-call overhead of
# models with many small variables low); on an accelerator all at once.
_GROUP_ELEMENTS = 1 << 18


def _groups(params):
    """Index lists of consecutive variables, as described above."""
    if params[0].device.type != "cpu":
        return [list(range(len(params)))]
    groups, current, size = [], [], 0
    for i, p in enumerate(params):
        current.append(i)
        size += p.numel()
        if size >= _GROUP_ELEMENTS:
            groups.append(current)
            current, size = [], 0
    if current and groups and size < _GROUP_ELEMENTS // 4:
        groups[-1] += current  # a small remainder rides with the last group (one call fewer per op)
    elif current:
        groups.append(current)
    return groups


def _in_groups(body, *lists):
    """body(*sublists) for each group of `_groups(lists[0])`."""
    groups = _groups(lists[0])
    if len(groups) == 1:
        return body(*lists)
    for index in groups:
        body(*([x[i] for i in index] for x in lists))


def _step(optimizer, device):
    """t + 1 as a float32 tensor (`iterations` is a tensor, not a variable,
    under gradient accumulation)."""
    iterations = torch.as_tensor(keras.ops.convert_to_tensor(optimizer.iterations))
    return (iterations + 1).to(dtype=torch.float32, device=device)


def _sgd(optimizer, hp, variables, params, grads, lr):
    torch._foreach_add_(params, grads, alpha=-float(lr))


def _momentum_zero(optimizer, variables, params, grads, lr):
    # torch's fused SGD refuses momentum buffers at momentum 0: v <- lr g.
    velocity = _slots(optimizer, "velocity", variables)
    torch._foreach_mul_(velocity, 0.0)
    torch._foreach_add_(velocity, grads, alpha=lr)
    torch._foreach_sub_(params, velocity)


def _momentum(optimizer, hp, variables, params, grads, lr):
    lr = float(lr)
    if hp["momentum"] == 0.0:
        return _momentum_zero(optimizer, variables, params, grads, lr)
    # v <- mu v + lr g; theta <- theta - v: torch's buffer update with
    # dampening 1 - lr and a unit step size.
    torch._fused_sgd_(
        params, grads, _slots(optimizer, "velocity", variables), weight_decay=0.0, momentum=hp["momentum"],
        lr=1.0, dampening=1.0 - lr, nesterov=False, maximize=False, is_first_step=False,
    )  # fmt: skip


def _nesterov(optimizer, hp, variables, params, grads, lr):
    lr = float(lr)
    if hp["momentum"] == 0.0:
        return _momentum_zero(optimizer, variables, params, grads, lr)
    # With s = lr g: u <- mu u + s; theta <- theta - (s + mu u), which is
    # torch's Nesterov step with gradient s and a unit step size.
    torch._fused_sgd_(
        params, torch._foreach_mul(grads, lr), _slots(optimizer, "velocity", variables), weight_decay=0.0,
        momentum=hp["momentum"], lr=1.0, dampening=0.0, nesterov=True, maximize=False, is_first_step=False,
    )  # fmt: skip


def _adagrad(optimizer, hp, variables, params, grads, lr):
    device = params[0].device
    torch._fused_adagrad_(
        params, grads, _slots(optimizer, "accumulator", variables), [_step(optimizer, device)] * len(params),
        lr=_lr(lr, device), lr_decay=0.0, weight_decay=0.0, eps=hp["epsilon"], maximize=False,
    )  # fmt: skip


def _rmsprop(optimizer, hp, variables, params, grads, lr):
    rho, eps, lr = hp["rho"], hp["epsilon"], float(lr)

    def body(params, grads, velocity):
        torch._foreach_mul_(velocity, rho)
        torch._foreach_addcmul_(velocity, grads, grads, value=1.0 - rho)
        denom = torch._foreach_sqrt(velocity)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, grads, denom, value=-lr)

    _in_groups(body, params, grads, _slots(optimizer, "velocity", variables))


def _adam(optimizer, hp, variables, params, grads, lr):
    """Adam/AMSGrad; with weight_decay, torch's fused AdamW for the variables
    Keras would decay (theta *= 1 - lr wd before the step, as Keras does) and
    the plain kernel for those in `exclude_from_weight_decay`."""
    device = params[0].device
    step, lr = _step(optimizer, device), _lr(lr, device)
    decay = optimizer.weight_decay or 0.0
    groups = {}
    for i, v in enumerate(variables):
        groups.setdefault(bool(decay) and compat.uses_weight_decay(optimizer, v), []).append(i)
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


# -- second-order optimizers ---------------------------------------------------
# Their curvature slots were written by the train step (or `set_curvature`)
# before the update. Whether this step is a refresh, t and the refresh count r
# come from the optimizer's host-side step count (`host_step()`), so deciding
# them reads nothing from the device; the bias corrections are Python floats
# computed from the float32 value of each beta, as the keras.ops code computes
# them in float32.


def _f32(x):
    return float(np.float32(x))


def _device_lr(learning_rate, device):
    """`_lr`, reading a constant learning rate's variable as its tensor, so
    that on an accelerator it stays there (float() of it would sync)."""
    if isinstance(learning_rate, keras.Variable):
        learning_rate = learning_rate.value
    return _lr(learning_rate, device)


def _schedule(optimizer):
    """(refresh, t, r): whether this step refreshes the curvature EMA, the
    1-based step and the number of refreshes so far, all host-side."""
    step = optimizer.host_step()
    return bool(optimizer.is_refresh(step)), step + 1, step // optimizer.hessian_update_interval + 1


def _correction(beta, count):
    return 1.0 - _f32(beta) ** count


def _scaled_step(params, numerators, denominators, scale):
    """theta -= scale * numerator / denominator, per variable; `denominators`
    is a temporary and may be overwritten. `scale` is a float (CPU) or a
    0-d device tensor (the learning rate stays on the accelerator)."""
    if not torch.is_tensor(scale):
        torch._foreach_addcdiv_(params, numerators, denominators, value=-scale)
        return
    torch._foreach_reciprocal_(denominators)
    torch._foreach_mul_(denominators, numerators)
    torch._foreach_mul_(denominators, scale)
    torch._foreach_sub_(params, denominators)


def _add_scaled(params, updates, scale):
    """theta -= scale * update (`updates` a temporary, maybe overwritten)."""
    if not torch.is_tensor(scale):
        torch._foreach_add_(params, updates, alpha=-scale)
        return
    torch._foreach_mul_(updates, scale)
    torch._foreach_sub_(params, updates)


def _hybrid(optimizer, hp, variables, params, grads, lr):
    """Hybrid (see its docstring): with l2, g + l2 theta and |D + l2|. The
    denominator max(sqrt(v / c2), h / c3) + eps is computed as
    (sqrt(max(v, h^2 c2 / c3^2)) + eps sqrt(c2)) / sqrt(c2), which needs one
    temporary per variable instead of two; sqrt(c2) moves into the step size."""
    refresh, t, r = _schedule(optimizer)
    b1, b2, b3, eps, l2 = hp["beta_1"], hp["beta_2"], hp["beta_3"], hp["epsilon"], hp["l2"]
    c1, c2, c3 = _correction(b1, t), _correction(b2, t), _correction(b3, r)
    scale = _device_lr(lr, params[0].device) * (math.sqrt(c2) / c1)

    def body(params, grads, curvature, m, v, h):
        if l2:
            grads = torch._foreach_add(grads, params, alpha=l2)
        torch._foreach_lerp_(m, grads, 1.0 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1.0 - b2)
        if refresh:
            d = torch._foreach_add(curvature, l2) if l2 else torch._foreach_abs(curvature)
            if l2:
                torch._foreach_abs_(d)
            torch._foreach_lerp_(h, d, 1.0 - b3)
            del d
        denom = torch._foreach_mul(h, h)
        torch._foreach_mul_(denom, c2 / (c3 * c3))
        torch._foreach_maximum_(denom, v)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, eps * math.sqrt(c2))
        _scaled_step(params, m, denom, scale)

    _in_groups(
        body, params, grads, _slots(optimizer, "curvature", variables), *(
            _slots(optimizer, name, variables) for name in ("momentum", "velocity", "hessian")
        ),
    )  # fmt: skip


def _spatial_average(d):
    """|d| averaged over a conv kernel's leading ndim - 2 axes (Keras layout),
    as a broadcast view; other tensors unchanged (they are squared next)."""
    if d.dim() <= 2:
        return d
    return d.abs().mean(dim=tuple(range(d.dim() - 2)), keepdim=True).expand_as(d)


def _adahessian(optimizer, hp, variables, params, grads, lr):
    """AdaHessian: v <- beta_2 v + (1 - beta_2) D_s^2 on refreshes; with
    power p, denominator sqrt(v / c2)^p + eps (p = 1: (sqrt(v) + eps
    sqrt(c2)) / sqrt(c2), sqrt(c2) in the step size)."""
    refresh, t, r = _schedule(optimizer)
    b1, b2, eps, power = hp["beta_1"], hp["beta_2"], hp["epsilon"], hp["hessian_power"]
    c1, c2 = _correction(b1, t), _correction(b2, r)
    lr = _device_lr(lr, params[0].device)
    scale = lr * (math.sqrt(c2) / c1) if power == 1.0 else lr / c1

    def body(params, grads, curvature, m, v):
        torch._foreach_lerp_(m, grads, 1.0 - b1)
        if refresh:
            d = [_spatial_average(c) for c in curvature]
            torch._foreach_mul_(v, b2)
            torch._foreach_addcmul_(v, d, d, value=1.0 - b2)
        if power == 1.0:
            denom = torch._foreach_sqrt(v)
            torch._foreach_add_(denom, eps * math.sqrt(c2))
        else:
            denom = torch._foreach_div(v, c2)
            torch._foreach_sqrt_(denom)
            torch._foreach_pow_(denom, power)
            torch._foreach_add_(denom, eps)
        _scaled_step(params, m, denom, scale)

    _in_groups(
        body, params, grads, _slots(optimizer, "curvature", variables),
        _slots(optimizer, "momentum", variables), _slots(optimizer, "velocity", variables),
    )  # fmt: skip


def _sophia(optimizer, hp, variables, params, grads, lr):
    """SophiaH/SophiaG: theta -= lr clip(m / max(gamma h, eps), -1, 1), h an
    EMA of D on refreshes only."""
    refresh, _, _ = _schedule(optimizer)
    b1, b2, gamma, eps = hp["beta_1"], hp["beta_2"], hp["gamma"], hp["epsilon"]
    lr = _device_lr(lr, params[0].device)

    def body(params, grads, curvature, m, h):
        torch._foreach_lerp_(m, grads, 1.0 - b1)
        if refresh:
            torch._foreach_lerp_(h, curvature, 1.0 - b2)
        ratio = torch._foreach_mul(h, gamma)
        torch._foreach_clamp_min_(ratio, eps)
        torch._foreach_reciprocal_(ratio)
        torch._foreach_mul_(ratio, m)
        torch._foreach_clamp_min_(ratio, -1.0)
        torch._foreach_clamp_max_(ratio, 1.0)
        _add_scaled(params, ratio, lr)

    _in_groups(
        body, params, grads, _slots(optimizer, "curvature", variables),
        _slots(optimizer, "momentum", variables), _slots(optimizer, "hessian", variables),
    )  # fmt: skip


KERNELS = {
    "sgd": _sgd, "momentum": _momentum, "nesterov": _nesterov, "adagrad": _adagrad, "rmsprop": _rmsprop,
    "adam": _adam, "hybrid": _hybrid, "adahessian": _adahessian, "sophia": _sophia,
} if _HAS_KERNELS else {}  # fmt: skip


def run_all(kernel, optimizer, hp, grads, variables, learning_rate):
    """All variables through `kernel`; False for mixed dtypes or devices (the
    per-variable keras.ops path runs instead)."""
    params = [v.value for v in variables]
    dtype, device = params[0].dtype, params[0].device
    if dtype not in _FLOATS or any(p.dtype != dtype or p.device != device for p in params):
        return False
    grads = [torch.as_tensor(g).to(dtype=dtype, device=device) for g in grads]
    with torch.no_grad():
        done = kernel(optimizer, hp, variables, params, grads, learning_rate)
    return done is not False


def cond_effects(pred, true_fn, false_fn):
    """Runs one of two side-effecting branches (eager: a Python if)."""
    (true_fn if bool(pred) else false_fn)()
