"""torch: `_foreach` update kernels of the second-order optimizers (Hybrid,
AdaHessian, SophiaH/SophiaG), listed in `kernels.KERNELS`."""

import math

import torch

from keras_optzoo.backend.torch.kernels_foreach import (
    _add_scaled, _correction, _device_lr, _in_groups, _scaled_step, _slots, _step,
)  # fmt: skip


# -- second-order optimizers ---------------------------------------------------
# Their curvature slots were written by the train step (or `set_curvature`)
# before the update. Whether this step is a refresh, t and the refresh count r
# come from the optimizer's host-side step count (`host_step()`), so deciding
# them reads nothing from the device; the bias corrections are Python floats
# computed from the float32 value of each beta, as the keras.ops code computes
# them in float32.


def _schedule(optimizer):
    """(refresh, t, r): whether this step refreshes the curvature EMA, the
    1-based step and the number of refreshes so far, all host-side."""
    step = optimizer.host_step()
    return bool(optimizer.is_refresh(step)), step + 1, step // optimizer.hessian_update_interval + 1


def _hybrid(optimizer, hp, variables, params, grads, lr):
    """Hybrid (see its docstring) through torch's fused AMSGrad kernel: with
    its running maximum set to h_hat^2 c2 before the call, the kernel's
    denominator sqrt(max(v, h_hat^2 c2)) / sqrt(c2) + eps is Hybrid's
    max(sqrt(v_hat), h_hat) + eps, and its m and v updates are Hybrid's
    (one pass over the weights and slots instead of ~9 `_foreach` passes).
    With l2: g + l2 theta and |D + l2|."""
    refresh, t, r = _schedule(optimizer)
    b1, b2, b3, eps, l2 = hp["beta_1"], hp["beta_2"], hp["beta_3"], hp["epsilon"], hp["l2"]
    c2, c3 = _correction(b2, t), _correction(b3, r)
    device = params[0].device
    step, lr = _step(optimizer, device), _device_lr(lr, device)

    def body(params, grads, curvature, m, v, h):
        if l2:
            grads = torch._foreach_add(grads, params, alpha=l2)
        if refresh:
            d = torch._foreach_add(curvature, l2) if l2 else torch._foreach_abs(curvature)
            if l2:
                torch._foreach_abs_(d)
            torch._foreach_lerp_(h, d, 1.0 - b3)
            del d
        floor = torch._foreach_mul(h, math.sqrt(c2) / c3)  # h_hat sqrt(c2), squared next
        torch._foreach_mul_(floor, floor)
        torch._fused_adam_(
            params, grads, m, v, floor, [step] * len(params), lr=lr, beta1=b1, beta2=b2, weight_decay=0.0,
            eps=eps, amsgrad=True, maximize=False,
        )  # fmt: skip

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
    EMA of D on refreshes only. (The clip as m / max(d, |m|), fewer passes,
    ran slower: torch's CPU abs and maximum cost more than the clamps.)"""
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
