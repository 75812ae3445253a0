"""JAX backend: HVPs (`hvp`), the with_curvature train step (`train_step`),
update kernels (`kernels`)."""
