"""torch: Hessian-vector products by double backward on the variables'
`.value` tensors (`torch.func.functional_call` on a Keras model gives zero
gradients, so the graph of the ordinary forward pass is differentiated twice)."""

import math

import torch

from keras_optzoo.backend._common import check_scalar, stateless_loss, words_for
from keras_optzoo.backend.torch import twice_differentiable


def dense(gradient):
    """torch gradients of Keras models are dense."""
    return gradient


def hvp_from(grads, params):
    """H @ vectors from gradients built with `create_graph=True`."""

    def hvp(vectors):
        vectors = [torch.as_tensor(v, dtype=p.dtype, device=p.device) for v, p in zip(vectors, params)]
        return list(torch.autograd.grad(grads, params, grad_outputs=vectors, retain_graph=True))

    return hvp


def output_grad(fn, y):
    """The gradient of the scalar `fn(y)` with respect to the tensor `y`."""
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(fn(y), y)[0]


def output_hvp(fn, y, v):
    """The Hessian of the scalar `fn(y)` with respect to `y`, times `v`."""
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(fn(y), y, create_graph=True)
        return torch.autograd.grad(grad, y, grad_outputs=torch.as_tensor(v, dtype=grad.dtype))[0]


class Oracle:
    """The derivatives of one train step's loss that a curvature estimate asks
    for, from the graph of the step's own forward pass (so the step's
    dropout masks and batch statistics; BatchNormalization's moving
    statistics are updated once, by that pass). needs "hessian": the
    gradient is built with `create_graph=True` and each HVP is one more
    backward pass; needs "outputs": J^T u by a backward pass from the
    outputs, J v as the transpose of that (double-backward trick);
    `loss_at(deltas)` evaluates the loss statelessly from the state before
    the step (`non_trainable`)."""

    def __init__(self, model, data, non_trainable, loss, outputs, params, needs, rng=None):
        self.loss, self.outputs, self.targets = loss.detach(), outputs, data[1:]
        self._model, self._data, self._non_trainable, self._params, self._rng = model, data, non_trainable, params, rng
        hessian, retain = "hessian" in needs, "hessian" in needs or "outputs" in needs
        self._graph_grads = torch.autograd.grad(loss, params, create_graph=hessian, retain_graph=retain)
        self.grads = [g.detach() for g in self._graph_grads]

    def hvp(self, vectors):
        return hvp_from(self._graph_grads, self._params)(vectors)

    def vjp(self, cotangent):
        return list(torch.autograd.grad(self.outputs, self._params, grad_outputs=cotangent, retain_graph=True))

    def jvp(self, vectors):
        zero = torch.zeros_like(self.outputs, requires_grad=True)
        pulled = torch.autograd.grad(self.outputs, self._params, grad_outputs=zero, retain_graph=True,
                                     create_graph=True)
        vectors = [torch.as_tensor(v, dtype=p.dtype, device=p.device) for v, p in zip(vectors, pulled)]
        return torch.autograd.grad(pulled, zero, grad_outputs=vectors, retain_graph=True)[0]

    def loss_at(self, deltas):
        with torch.no_grad(), self._rng():
            values = [p + torch.as_tensor(d, dtype=p.dtype) for p, d in zip(self._params, deltas)]
            return stateless_loss(self._model, self._data, values, self._non_trainable)[0]


class HessianProgram:
    """The loss of `model` under `loss_fn`, its gradient and HVPs. Each
    evaluation runs one forward pass and a gradient with `create_graph=True`;
    every HVP after that is one backward pass through that graph."""

    def __init__(self, model, loss_fn):
        self.model = model
        self.loss_fn = loss_fn

    def evaluate(self, x, y, gradient=True):
        """(loss, grads, hvp) at the current weights and (x, y); `gradient` ignored (HVP: its double backward)."""
        params = [v.value for v in self.model.trainable_variables]
        with twice_differentiable():
            loss = check_scalar(self.loss_fn(y, self.model(x, training=False)))
        for extra in self.model.losses:
            loss = loss + extra
        grads = torch.autograd.grad(loss, params, create_graph=True)
        return loss.detach(), [g.detach() for g in grads], hvp_from(grads, params)


def keep_finite(new, previous):
    """`new` with its non-finite entries replaced by those of `previous`. On
    a CPU one sum per tensor first tells whether anything needs replacing (a
    sum of finite entries is finite, barring an overflow, which only sends
    it to the elementwise check; MLP: 0.3 -> 0.05 ms per tensor). On an
    accelerator `where` runs (reading the sums would wait for the device)."""
    out = []
    for n, p in zip(new, previous):
        if n.device.type != "cpu" or not bool(torch.isfinite(n.sum())):
            n = torch.where(torch.isfinite(n), n, torch.as_tensor(p, dtype=n.dtype, device=n.device))
        out.append(n)
    return out


def multiply_into(temporaries, factors):
    """temporaries * factors in the temporaries' memory (a Hutchinson peak: one buffer fewer)."""
    return [t.mul_(torch.as_tensor(f, dtype=t.dtype, device=t.device)) for t, f in zip(temporaries, factors)]


def _generator(seed, step):
    """A host generator whose stream is a function of (seed, step)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


def uniform(like, seed, step):
    """Uniform [0, 1) float32 numbers shaped like (and on the device of) the
    tensor `like`, a function of (seed, step)."""
    return torch.rand(tuple(like.shape), generator=_generator(seed, step)).to(like.device)


_BYTE_SIGNS = torch.tensor([[((b >> j) & 1) * 2.0 - 1.0 for j in range(8)] for b in range(256)])  # byte -> 8 signs


def rademacher(variables, seed, step):
    """+-1 probes shaped like `variables`, a function of (seed, step)."""
    generator, out = _generator(seed, step), []
    for v in variables:
        like = getattr(v, "value", v)  # a variable or a tensor shaped like one
        words = torch.randint(-(2**31), 2**31, (words_for(v.shape),), generator=generator, dtype=torch.int32)
        out.append(_signs(words.to(like.device), tuple(v.shape), like.dtype))  # drawn on the host, unpacked on the device
    return out


def _signs(words, shape, dtype):
    """`_common.signs` (bit j of word i -> entry 32 i + j, +1 for a 1) as one
    gather: each byte of the words (least significant first: little-endian)
    picks its row of `_BYTE_SIGNS`. One pass writes the probe where shifting
    and masking made five: `fit`, MLP, Hybrid k=1 1.99 -> 1.90x Adam."""
    table = _BYTE_SIGNS.to(device=words.device, dtype=dtype)
    rows = torch.index_select(table, 0, words.reshape(-1).view(torch.uint8).int())
    return rows.view(-1)[: math.prod(shape)].view(shape)
