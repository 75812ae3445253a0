"""torch: Hessian-vector products by double backward on the variables'
`.value` tensors.

(`torch.func.functional_call` on a Keras model gives zero gradients, so the
graph of the ordinary forward pass is differentiated twice instead.)
"""

import torch

from keras_optzoo.backend._common import check_scalar


def hvp_from(grads, params):
    """H @ vectors from gradients built with `create_graph=True`."""

    def hvp(vectors):
        vectors = [torch.as_tensor(v, dtype=p.dtype, device=p.device) for v, p in zip(vectors, params)]
        return list(torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True))

    return hvp


class HessianProgram:
    """The loss of `model` under `loss_fn`, its gradient and HVPs. Each
    evaluation runs one forward pass and a gradient with `create_graph=True`;
    every HVP after that is one backward pass through that graph."""

    def __init__(self, model, loss_fn):
        self.model = model
        self.loss_fn = loss_fn

    def evaluate(self, x, y):
        """(loss, grads, hvp) at the model's current weights and (x, y)."""
        params = [v.value for v in self.model.trainable_variables]
        loss = check_scalar(self.loss_fn(y, self.model(x, training=False)))
        for extra in self.model.losses:
            loss = loss + extra
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return loss.detach(), [g.detach() for g in grads], hvp_from(grads, params)


def rademacher(variables, seed, step):
    """+-1 probes shaped like `variables`, a function of (seed, step)."""
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))
    out = []
    for v in variables:
        bits = torch.randint(0, 2, tuple(v.shape), generator=generator)
        out.append((2 * bits - 1).to(dtype=v.value.dtype, device=v.value.device))
    return out
