"""torch: the `_foreach` update kernels (RMSprop; the second-order ones are
in `kernels_second_order`) and the helpers the torch kernels share: slots
as tensors, the learning rate without a host read, the bias corrections and
the grouping of variables on CPU."""

import keras
import numpy as np
import torch


def _lr(learning_rate, device):
    """A float on CPU; on an accelerator a device tensor (no host sync)."""
    if device.type == "cpu" or not torch.is_tensor(learning_rate):
        return float(learning_rate)
    return learning_rate.to(device=device, dtype=torch.float32)


def _step(optimizer, device):
    """t + 1 as a float32 tensor (`iterations` is a tensor, not a variable,
    under gradient accumulation)."""
    iterations = torch.as_tensor(keras.ops.convert_to_tensor(optimizer.iterations))
    return (iterations + 1).to(dtype=torch.float32, device=device)


def _correction(beta, count):
    """1 - beta^count with beta rounded to float32 first, as the keras.ops
    code computes the bias corrections (a Python float: no device work)."""
    return 1.0 - float(np.float32(beta)) ** count


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


def _device_lr(learning_rate, device):
    """`_lr`, reading a constant learning rate's variable as its tensor, so
    that on an accelerator it stays there (float() of it would sync)."""
    if isinstance(learning_rate, keras.Variable):
        learning_rate = learning_rate.value
    return _lr(learning_rate, device)


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


def _rmsprop(optimizer, hp, variables, params, grads, lr):
    rho, eps, lr = hp["rho"], hp["epsilon"], float(lr)

    def body(params, grads, velocity):
        torch._foreach_mul_(velocity, rho)
        torch._foreach_addcmul_(velocity, grads, grads, value=1.0 - rho)
        denom = torch._foreach_sqrt(velocity)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(params, grads, denom, value=-lr)

    _in_groups(body, params, grads, _slots(optimizer, "velocity", variables))
