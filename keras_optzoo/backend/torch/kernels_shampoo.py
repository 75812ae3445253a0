"""torch: the Shampoo step in plain torch ops (see `kernels_kronecker`)."""

import torch

from keras_optzoo import _keras_compat as compat
from keras_optzoo.backend.torch.kernels_foreach import _correction
from keras_optzoo.backend.torch.kernels_kronecker import _accumulate, _count, _finite, _host_step, _multiply_modes


def _inverse_root(matrix, previous, epsilon, exponent):
    n = matrix.shape[0]
    eye = torch.eye(n, dtype=matrix.dtype, device=matrix.device)
    finite_in = _finite(matrix)
    values, vectors = torch.linalg.eigh(torch.where(finite_in, matrix, eye) + epsilon * eye)
    smallest = values.min()
    values = torch.where(smallest < epsilon, values - smallest + epsilon, values)
    root = (vectors * values.pow(-exponent)[None, :]) @ vectors.T
    ok = finite_in & _finite(root)
    return torch.where(ok, root, previous), ok


def _blocks(x, chunks):
    """x cut into blocks along every dimension, row-major (views)."""
    blocks = [x]
    for axis, sizes in enumerate(chunks):
        if len(sizes) > 1:
            blocks = [part for b in blocks for part in torch.split(b, sizes, dim=axis)]
    return blocks


def _shampoo(optimizer, hp, variables, params, grads, lr):
    if params[0].dtype != torch.float32:
        return False
    t = _host_step(optimizer) + 1
    lr, b1, b2, grafting = float(lr), hp["beta_1"], hp["beta_2"], hp["grafting"]
    start, frequency, bias = optimizer._start, hp["precondition_frequency"], hp["use_bias_correction"]
    refresh = (t % frequency == 0 and t > start) or t == start
    correction = _correction(b2, t) if bias and b2 < 1.0 else 1.0
    oks = []
    for variable, theta, g in zip(variables, params, grads):
        shape, chunks = optimizer._layout(variable)
        state = optimizer._factors[compat.variable_index(optimizer, variable)]
        g, theta = g.reshape(shape), theta.view(shape)
        order = len(shape)
        for g_block, pairs in zip(_blocks(g, chunks), state):  # 1. factors
            for d, (factor, root) in enumerate(pairs):
                f = factor.value
                _accumulate(f, g_block, d, b2, 1.0 if b2 == 1.0 else 1.0 - b2)
                if refresh:  # 3. inverse roots
                    exponent = hp["exponent_override"] or 1.0 / (2 * order)
                    r, ok = _inverse_root(f / correction, root.value, hp["epsilon"], exponent)
                    root.value.copy_(r)
                    oks.append(ok)
        velocity = None  # 2. the grafted method's second moment
        if grafting in ("adam", "rmsprop", "adagrad"):
            velocity = optimizer._slot("grafting_velocity", variable).value.view(shape)
            if grafting == "adagrad":
                velocity.addcmul_(g, g)
            else:
                velocity.lerp_(g * g, 1.0 - hp["grafting_beta_2"])
        g_bar = g  # 4. the filtered gradient
        if b1 > 0:
            m = optimizer._slot("momentum", variable).value.view(shape)
            m.lerp_(g, 1.0 - b1)
            g_bar = m / _correction(b1, t) if bias else m
        grafted = g_bar  # 5. grafted, preconditioned direction
        if velocity is not None:
            v_hat = velocity / _correction(hp["grafting_beta_2"], t) if grafting == "adam" and bias else velocity
            grafted = g_bar / v_hat.sqrt().add_(hp["grafting_epsilon"])
        if t < start and grafting is not None:
            direction = grafted.clone() if grafted is g_bar else grafted
        else:
            direction = torch.empty_like(g)
            for x, a, out, pairs in zip(_blocks(g_bar, chunks), _blocks(grafted, chunks), _blocks(direction, chunks),
                                        state):
                p = _multiply_modes(x, [root.value for _, root in pairs])
                if grafting is not None:
                    p = p * (torch.linalg.vector_norm(a) / (torch.linalg.vector_norm(p) + 1e-16))
                out.copy_(p)
        if optimizer._decay(variable):  # 6-8. decoupled decay, momentum, the step
            direction.add_(theta, alpha=optimizer.weight_decay)
        if hp["momentum"] > 0:
            buffer = optimizer._slot("heavy_ball", variable).value.view(shape)
            buffer.mul_(hp["momentum"]).add_(direction)
            direction = direction.add_(buffer, alpha=hp["momentum"]) if hp["nesterov"] else buffer
        theta.sub_(direction, alpha=lr)
    _count(optimizer, oks)
