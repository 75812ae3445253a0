"""PyTorch: Hessian-vector products by double backward on the variables' `.value` tensors.

(`torch.func.functional_call` on a Keras model gives zero gradients, so the
graph of the ordinary forward pass is differentiated twice instead.)
"""

import torch

from keras_optzoo.curvature import _steps
from keras_optzoo.curvature.estimators import curvature_for


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
    opt = model.optimizer
    x, y, sample_weight = _steps.unpack(data)
    y_pred = model(x, training=True)
    model.zero_grad()
    loss = model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
    model._loss_tracker.update_state(loss, sample_weight=_steps.batch_size(x))
    scaled = opt.scale_loss(loss)
    variables = model.trainable_weights[:]
    if not opt.built:
        opt.build(variables)
    params = [v.value for v in variables]
    step = int(opt.iterations)
    if step % opt.hessian_update_interval == 0:
        graph_grads = torch.autograd.grad(scaled, params, create_graph=True)
        grads = [g.detach() for g in graph_grads]
        probes = _steps.probes_for(opt, variables, step)
        new = curvature_for(opt, _hvp_from(graph_grads, params), grads, probes)
        with torch.no_grad():
            for slot, value in zip(opt.curvature_slots(), new):
                slot.assign(value.detach())
        del graph_grads
    else:
        grads = list(torch.autograd.grad(scaled, params))
    opt.curvature_supplied = True
    with torch.no_grad():
        opt.apply(grads, variables)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
