"""torch: update kernels.

Keras swaps in its own `_foreach` kernels only for its exact built-in classes,
so a subclass runs one small kernel per variable. These update all variables
in one call: torch's fused CPU/CUDA kernels where the algorithm has one and
its state means the same as ours, `_foreach` ops otherwise. Each is
`kernel(optimizer, hp, variables, params, grads, lr)` (params: the variables'
tensors), found by kind in `KERNELS`; returning False hands the step back to
the keras.ops code.
"""

import torch

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend.torch.kernels_foreach import _lr, _rmsprop, _slots, _step
from keras_optzoo.backend.torch.kernels_kronecker import _soap
from keras_optzoo.backend.torch.kernels_second_order import _adahessian, _hybrid, _sophia
from keras_optzoo.backend.torch.kernels_shampoo import _shampoo

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


def _sgd(optimizer, hp, variables, params, grads, lr):
    torch._foreach_add_(params, grads, alpha=-float(lr))


def _momentum_zero(optimizer, variables, params, grads, lr):
    # torch's fused SGD refuses momentum buffers at momentum 0: v <- lr g.
    velocity = _slots(optimizer, "velocity", variables)
    torch._foreach_mul_(velocity, 0.0)
    torch._foreach_add_(velocity, grads, alpha=lr)
    torch._foreach_sub_(params, velocity)


def _fused_sgd_skips(params):
    # torch's _fused_sgd_ with momentum writes the buffer but leaves float16 and
    # bfloat16 parameters unchanged (pytorch/pytorch#191763; seen on 2.4 and
    # 2.13 CPU): those go to the keras.ops code.
    return any(p.dtype in (torch.float16, torch.bfloat16) for p in params)


def _momentum(optimizer, hp, variables, params, grads, lr):
    if _fused_sgd_skips(params):
        return False
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
    if _fused_sgd_skips(params):
        return False
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


KERNELS = {
    "sgd": _sgd, "momentum": _momentum, "nesterov": _nesterov, "adagrad": _adagrad, "rmsprop": _rmsprop,
    "adam": _adam, "hybrid": _hybrid, "adahessian": _adahessian, "sophia": _sophia, "soap": _soap,
    "shampoo": _shampoo,
} if _HAS_KERNELS else {}  # fmt: skip


def run_all(kernel, optimizer, hp, grads, variables, learning_rate):
    """All variables through `kernel`; False for mixed dtypes or devices (the
    per-variable keras.ops path runs instead)."""
    params = [v.value for v in variables]
    dtype, device = params[0].dtype, params[0].device
    if dtype not in _FLOATS or any(p.dtype != dtype or p.device != device for p in params):
        return False
    grads = [torch.as_tensor(g).to(dtype=dtype, device=device) for g in grads]
    # The fused kernels walk a gradient's memory in the variable's order: a
    # gradient laid out otherwise (torch.autograd.grad of a Conv2D kernel is
    # a permuted view) is copied into that layout first.
    grads = [g if g.stride() == p.stride() else torch.empty_like(p).copy_(g) for g, p in zip(grads, params)]
    with torch.no_grad():
        done = kernel(optimizer, hp, variables, params, grads, learning_rate)
    return done is not False


def cond_effects(pred, true_fn, false_fn):
    """Runs one of two side-effecting branches (eager: a Python if)."""
    (true_fn if bool(pred) else false_fn)()
