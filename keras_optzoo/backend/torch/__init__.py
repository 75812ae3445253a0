"""torch backend: HVPs (`hvp`), the with_curvature train step
(`train_step`), update kernels (`kernels`)."""

import torch.nn.attention as _attention


def twice_differentiable():
    """A context in which scaled_dot_product_attention (what Keras's
    MultiHeadAttention calls on torch) runs its math kernel: the fused CPU
    and CUDA kernels have no double backward ("derivative for
    aten::_scaled_dot_product_flash_attention_for_cpu_backward is not
    implemented"), so HVPs through attention need it."""
    return _attention.sdpa_kernel([_attention.SDPBackend.MATH])
