"""Kronecker-factored preconditioners: SOAP and Shampoo.

Both keep, for each dimension d of a weight tensor, a factor L_d, the running
average of the gradient's mode-d outer products (for a matrix G: L_0 ~ G G^T,
L_1 ~ G^T G). Shampoo multiplies the gradient by an inverse root of every
factor; SOAP runs Adam in the eigenbasis of the factors. They need only the
gradient: plain `model.compile(optimizer=...)`, no `with_curvature`.

Factors, bases and roots are float32 whatever the variable's dtype. The
eigendecompositions run in `keras.ops` inside a traced condition, so they
cost time only on the steps that refresh them; one that returns non-finite
values keeps the previous basis or root and is counted in
`optimizer.failed_refreshes`.
"""

from keras import ops

from keras_optzoo import _keras_compat as compat
from keras_optzoo import _validation, backend
from keras_optzoo.optimizers._base import OptzooOptimizer, register

GRAFTINGS = ("adam", "rmsprop", "adagrad", "sgd", None)


# -- tensor helpers shared by both ------------------------------------------------
def _mode_product(x, d):
    """x's mode-d outer product: sum over every index but the d-th of x x^T."""
    others = [a for a in range(len(x.shape)) if a != d]
    return ops.tensordot(x, x, axes=[others, others])


def _multiply_modes(x, matrices, transpose=False):
    """x multiplied along each dimension d by matrices[d] (None: left alone):
    x x_d M_d^T for every d (transpose=False), x x_d M_d otherwise. For a
    matrix x, M_0^T x M_1 (or M_0 x M_1^T)."""
    if all(m is None for m in matrices):
        return x
    for m in matrices:
        if m is None:
            x = ops.moveaxis(x, 0, -1)
        else:
            x = ops.tensordot(x, m, axes=[[0], [1 if transpose else 0]])
    return x


def _all_finite(*tensors):
    return ops.all(ops.stack([ops.all(ops.isfinite(t)) for t in tensors]))


def _lerp(old, new, weight):
    """old + weight * (new - old), the form torch's lerp_ computes."""
    return ops.add(old, ops.multiply(ops.subtract(new, old), weight))


class _KroneckerBase(OptzooOptimizer):
    """Factor variables beside the usual slots, weight decay done in the
    step (both references order it differently from Keras), and the count of
    failed refreshes."""

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._failed = self.add_variable(shape=(), dtype="int32", name="failed_refreshes",
                                         aggregation="only_first_replica")
        self._factors = [self._build_factors(i, v) for i, v in enumerate(var_list)]

    def _factor(self, size, name, identity=False):
        return self.add_variable(shape=(size, size), dtype="float32", name=name,
                                 initializer="identity" if identity else "zeros")

    @property
    def failed_refreshes(self):
        """How many eigendecompositions (or QR refreshes) returned non-finite
        values and were dropped, keeping the previous basis or root. (Under
        `mixed_float16`, Keras wraps the optimizer in a LossScaleOptimizer:
        read `model.optimizer.inner_optimizer.failed_refreshes`.)"""
        return int(ops.convert_to_numpy(self._failed)) if self.built else 0

    def _count_failures(self, ok_flags):
        if ok_flags:
            failures = ops.sum(ops.stack([ops.cast(ops.logical_not(ok), "int32") for ok in ok_flags]))
            self.assign_add(self._failed, failures)

    def _apply_weight_decay(self, variables):
        # Applied inside update_step, where each reference applies it.
        return

    def _fused_spec(self):
        # torch: the same step in plain torch ops (backend/torch/kernels_kronecker.py).
        return type(self).__name__.lower(), {key: getattr(self, key) for key in self._hyperparameters}

    def _decay(self, variable):
        return self.weight_decay is not None and self.weight_decay > 0 and compat.uses_weight_decay(self, variable)


# -- SOAP -------------------------------------------------------------------------
def _merged_shape(shape, max_dim):
    """Adjacent dimensions multiplied together while the product stays at or
    below max_dim (the SOAP authors' `merge_dims`)."""
    merged, current = [], 1
    for size in shape:
        if current * size > max_dim:
            if current > 1:
                merged.append(current)
                current = size
            else:
                merged.append(size)
        else:
            current *= size
    if current > 1 or not merged:
        merged.append(current)
    return tuple(merged)


@register
class SOAP(_KroneckerBase):
    """SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al.,
    "SOAP: Improving and Stabilizing Shampoo using Adam", ICLR 2025).

    For each dimension d of a weight (size n_d <= `max_precondition_dim`) a
    factor L_d and its eigenbasis Q_d (n_d x n_d):

        L_d <- shampoo_beta * L_d + (1 - shampoo_beta) * G_(d) G_(d)^T
        G'  = G x_0 Q_0^T x_1 Q_1^T ...        (for a matrix: Q_0^T G Q_1)
        m   <- beta_1 * m + (1 - beta_1) * G   (in the weights' basis)
        v   <- beta_2 * v + (1 - beta_2) * G'^2
        U   = rotate_back( rotate(m) / (sqrt(v) + epsilon) )
        theta <- theta - lr * sqrt(1 - beta_2^s) / (1 - beta_1^s) * U
        theta <- theta * (1 - lr * weight_decay)

    with s = t - 1. Step 1 only sets L_d and Q_d (eigenvectors of L_d by
    eigh, largest eigenvalue first) and leaves the weights alone; from step
    2 on the update above runs with the current bases and then updates L_d.
    Every `precondition_frequency` steps (s a multiple of it) each basis is
    refreshed by one power iteration, Q_d <- QR(L_d Q_d), its columns put in
    order of the estimated eigenvalues diag(Q_d^T L_d Q_d), largest first,
    with v's entries re-ordered to match. This is the authors' first release
    and `pytorch_optimizer.SOAP` (4.1.0), which the tests compare with; the
    decoupled weight decay comes after the step, as there.

    Keras layouts: a Dense kernel (in, out) gets an in x in and an out x out
    factor, a Conv2D kernel (kh, kw, in, out) four. A dimension larger than
    `max_precondition_dim` (an Embedding's vocabulary) is left unrotated.
    1-D variables (biases, normalization scales) get Adam unless
    `precondition_1d`. `merge_dims=True` first multiplies adjacent dimensions
    together while the product stays <= `max_precondition_dim` (a Conv2D
    kernel (3, 3, 32, 64) becomes (288, 64)).

    Memory: m and v (2 per parameter) plus 2 n_d^2 floats per preconditioned
    dimension (a 784 x 500 kernel: 2 x (784^2 + 500^2) = 1.7M floats beside
    its 392k weights). Time: three rotations and one factor update per step,
    O(sum_d n_d) multiply-adds per parameter, and an eigh/QR of each factor
    at the refreshes.

    Args:
        learning_rate: lr, default 3e-3.
        beta_1: first-moment decay in [0, 1), default 0.95.
        beta_2: second-moment decay in [0, 1), default 0.95.
        shampoo_beta: factor decay in [0, 1), default None (= beta_2).
        epsilon: a number > 0, default 1e-8.
        weight_decay: decoupled decay >= 0, default 0.01.
        precondition_frequency: steps between basis refreshes, integer >= 1,
            default 10.
        max_precondition_dim: integer >= 1, default 10000.
        merge_dims: bool, default False.
        precondition_1d: bool, default False.
    {{base_kwargs}}
    """

    _hyperparameters = ("beta_1", "beta_2", "shampoo_beta", "epsilon", "precondition_frequency",
                        "max_precondition_dim", "merge_dims", "precondition_1d")
    _slot_names = ("momentum", "velocity")

    def __init__(self, learning_rate=3e-3, beta_1=0.95, beta_2=0.95, shampoo_beta=None, epsilon=1e-8,
                 weight_decay=0.01, precondition_frequency=10, max_precondition_dim=10000, merge_dims=False,
                 precondition_1d=False, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        v = _validation
        self.beta_1 = v.unit_interval("beta_1", beta_1)
        self.beta_2 = v.unit_interval("beta_2", beta_2)
        self.shampoo_beta = None if shampoo_beta is None else v.unit_interval("shampoo_beta", shampoo_beta)
        self.epsilon = v.positive("epsilon", epsilon)
        self.precondition_frequency = v.integer("precondition_frequency", precondition_frequency, low=1)
        self.max_precondition_dim = v.integer("max_precondition_dim", max_precondition_dim, low=1)
        self.merge_dims = v.boolean("merge_dims", merge_dims)
        self.precondition_1d = v.boolean("precondition_1d", precondition_1d)

    def _layout(self, variable):
        """(shape the factors see, whether each of its dimensions is rotated)."""
        shape = tuple(variable.shape)
        if len(shape) == 0:
            return (1,), (False,)
        if len(shape) == 1:
            return shape, (self.precondition_1d and shape[0] <= self.max_precondition_dim,)
        if self.merge_dims:
            shape = _merged_shape(shape, self.max_precondition_dim)
        return shape, tuple(n <= self.max_precondition_dim for n in shape)

    def _build_factors(self, index, variable):
        shape, rotated = self._layout(variable)
        return [
            (self._factor(n, f"soap_factor_{index}_{d}"), self._factor(n, f"soap_basis_{index}_{d}", identity=True))
            if r else None
            for d, (n, r) in enumerate(zip(shape, rotated))
        ]

    def update_step(self, gradient, variable, learning_rate):
        shape, _ = self._layout(variable)
        pairs = self._factors[compat.variable_index(self, variable)]
        factors = [None if p is None else ops.convert_to_tensor(p[0]) for p in pairs]
        bases = [None if p is None else ops.convert_to_tensor(p[1]) for p in pairs]
        m_slot, v_slot = self._slot("momentum", variable), self._slot("velocity", variable)
        g = ops.reshape(ops.cast(gradient, "float32"), shape)
        theta = ops.cast(variable, "float32")
        m = ops.reshape(ops.cast(m_slot, "float32"), shape)
        v = ops.reshape(ops.cast(v_slot, "float32"), shape)
        lr = ops.cast(learning_rate, "float32")
        shampoo_beta = self.beta_2 if self.shampoo_beta is None else self.shampoo_beta
        new_factors = [None if f is None else _lerp(f, _mode_product(g, d), 1.0 - shampoo_beta)
                       for d, f in enumerate(factors)]
        decay = self.weight_decay if self._decay(variable) else 0.0
        s = ops.cast(self.iterations, "float32")
        live = [d for d, f in enumerate(factors) if f is not None]

        def start():
            # Step 1: the factors and their eigenbases; weights, m and v stay.
            new_bases, oks = list(bases), []
            for d in live:
                q, ok = _eigenbasis(new_factors[d], bases[d])
                new_bases[d] = q
                oks.append(ok)
            return theta, m, v, [new_bases[d] for d in live], oks

        def step():
            g_rot = _multiply_modes(g, bases)
            m_new = _lerp(m, g, 1.0 - self.beta_1)
            v_new = _lerp(v, ops.square(g_rot), 1.0 - self.beta_2)
            direction = ops.divide(_multiply_modes(m_new, bases), ops.add(ops.sqrt(v_new), self.epsilon))
            direction = _multiply_modes(direction, bases, transpose=True)
            c1 = 1.0 - ops.power(self.beta_1, s)
            c2 = 1.0 - ops.power(self.beta_2, s)
            theta_new = ops.subtract(theta, ops.multiply(ops.reshape(direction, theta.shape),
                                                         lr * ops.sqrt(c2) / c1))
            if decay:
                theta_new = ops.multiply(theta_new, 1.0 - lr * decay)

            def refresh():
                return _power_iteration(new_factors, bases, v_new, live)

            def keep():
                return [bases[d] for d in live], v_new, [ops.convert_to_tensor(True) for _ in live]

            if not live:
                return theta_new, m_new, v_new, [], []
            is_refresh = ops.equal(ops.mod(self.iterations, self.precondition_frequency), 0)
            new_bases, v_new, oks = backend.cond_values(is_refresh, refresh, keep)
            return theta_new, m_new, v_new, new_bases, oks

        theta_new, m_new, v_new, new_bases, oks = backend.cond_values(ops.equal(self.iterations, 0), start, step)
        for d, q in zip(live, new_bases):
            self.assign(pairs[d][0], new_factors[d])
            self.assign(pairs[d][1], q)
        self._count_failures(oks)
        self.assign(m_slot, ops.cast(ops.reshape(m_new, m_slot.shape), m_slot.dtype))
        self.assign(v_slot, ops.cast(ops.reshape(v_new, v_slot.shape), v_slot.dtype))
        self.assign(variable, ops.cast(theta_new, variable.dtype))


def _eigenbasis(factor, previous):
    """Eigenvectors of a symmetric factor, largest eigenvalue first; the
    previous basis where the factor or its eigenvectors are not finite."""
    n = factor.shape[0]
    finite_in = _all_finite(factor)
    safe = ops.where(finite_in, factor, ops.eye(n, dtype="float32"))
    _, vectors = ops.eigh(ops.add(safe, 1e-30 * ops.eye(n, dtype="float32")))
    vectors = ops.flip(vectors, axis=1)
    ok = ops.logical_and(finite_in, _all_finite(vectors))
    return ops.where(ok, vectors, previous), ok


def _power_iteration(factors, bases, v, live):
    """One power iteration + QR per rotated dimension, columns in order of
    the estimated eigenvalues, v's entries permuted to match."""
    new_bases, oks = [], []
    for d in live:
        product = ops.matmul(factors[d], bases[d])
        estimate = ops.sum(ops.multiply(bases[d], product), axis=0)
        order = ops.argsort(ops.negative(estimate))
        q, _ = ops.qr(ops.take(product, order, axis=1), mode="reduced")
        ok = _all_finite(q)
        v = ops.where(ok, ops.take(v, order, axis=d), v)
        new_bases.append(ops.where(ok, q, bases[d]))
        oks.append(ok)
    return new_bases, v, oks


# -- Shampoo ----------------------------------------------------------------------
def _squeezed_shape(shape, merge_below=None):
    """`shape` without its size-1 dimensions; with `merge_below`, adjacent
    dimensions multiplied together, from the last one back, while the product
    stays at or below it (Distributed Shampoo's default reshaping)."""
    squeezed = [n for n in shape if n != 1] or [1]
    if merge_below is None:
        return tuple(squeezed)
    merged = [squeezed[-1]]
    for n in reversed(squeezed[:-1]):
        if merged[-1] * n <= merge_below:
            merged[-1] *= n
        else:
            merged.append(n)
    return tuple(reversed(merged))


def _chunks(size, block):
    return [block] * (size // block) + ([size % block] if size % block else [])


def _split_blocks(x, chunks):
    """x cut into blocks along every dimension (row-major order of blocks)."""
    blocks = [x]
    for axis, sizes in enumerate(chunks):
        if len(sizes) == 1:
            continue
        edges = [sum(sizes[: i + 1]) for i in range(len(sizes) - 1)]
        blocks = [part for b in blocks for part in ops.split(b, edges, axis=axis)]
    return blocks


def _join_blocks(blocks, chunks):
    for axis in reversed(range(len(chunks))):
        k = len(chunks[axis])
        if k == 1:
            continue
        blocks = [ops.concatenate(blocks[i : i + k], axis=axis) for i in range(0, len(blocks), k)]
    return blocks[0]


@register
class Shampoo(_KroneckerBase):
    """Shampoo (Gupta et al. 2018) as Meta's Distributed Shampoo runs it on
    one device (Shi et al. 2023, the AlgoPerf 2024 external-tuning winner).

    A weight's size-1 dimensions are dropped and each remaining dimension is
    cut into blocks of at most `max_preconditioner_dim`. Per block, per
    dimension d, a factor L_d; on every step t:

        L_d  <- beta_2 * L_d + (1 - beta_2) * G_(d) G_(d)^T   (a sum if beta_2 = 1)
        every precondition_frequency steps from start_preconditioning_step:
        X_d  <- (L_d / (1 - beta_2^t) + epsilon I)^(-e)      e = 1 / (2 * order)
        m    <- beta_1 * m + (1 - beta_1) * G ;  G_bar = m / (1 - beta_1^t)
        P    = G_bar x_0 X_0 x_1 X_1 ...                       (a matrix: X_0 G_bar X_1)
        P    <- P * ||A(G_bar)|| / (||P|| + 1e-16)             per block (grafting)
        P    <- A(G_bar)              before start_preconditioning_step
        P    <- P + weight_decay * theta
        M    <- momentum * M + P ;  P <- P + momentum * M (nesterov) or M
        theta <- theta - lr * P

    X_d comes from one symmetric eigendecomposition (eigenvalues below
    epsilon are shifted up to it, as Distributed Shampoo's default
    perturbation does); `order` is the number of dimensions of the block,
    `exponent_override` replaces e. A(.) is the grafted method, whose
    second moment (only) is kept from the raw gradient g:
    "adam" A(x) = x / (sqrt(V / (1 - grafting_beta_2^t)) + grafting_epsilon),
    V <- grafting_beta_2 V + (1 - grafting_beta_2) g^2; "rmsprop" the same
    without bias correction; "adagrad" V <- V + g^2; "sgd" A(x) = x; None
    no grafting (the identity before the first root). The bias corrections
    follow `use_bias_correction`.

    Defaults are Distributed Shampoo's recommendation for replacing AdamW
    (its README, "How to Use", example 4): lr 1e-3, betas (0.9, 0.999),
    epsilon 1e-12, weight_decay 1e-5 decoupled, max_preconditioner_dim
    8192, precondition_frequency 100 (preconditioning from step 100), Adam
    grafting with beta_2 0.999 and epsilon 1e-8.

    One difference by default: Distributed Shampoo's single-device
    configuration also merges adjacent dimensions (from the last one back)
    while their product stays at or below `max_preconditioner_dim`, so a
    Dense (500, 10) kernel gets one 5,000 x 5,000 factor and a Conv2D (3, 3,
    16, 32) kernel one of 4,608. `merge_dims=True` does that too (and then
    equals `DistributedShampoo` within float32 rounding); the default False
    keeps one factor per dimension, because on the MNIST MLP the merged
    factor's eigendecomposition took 7 s a refresh on a 2-core CPU (41 s on
    TensorFlow) and the step 17x AdamW's (7x unmerged), and the merged runs
    trained no better (docs/kronecker.md).

    Memory: per block dimension b_d, two b_d x b_d floats (factor and root);
    per parameter the grafting V, m (beta_1 > 0) and M (momentum > 0). Time:
    one factor update and one preconditioning per step, O(sum_d b_d)
    multiply-adds per parameter, and an eigh of each factor at the refreshes.

    Args:
        learning_rate: lr, default 1e-3.
        beta_1: first-moment decay in [0, 1), default 0.9 (0: no filtering).
        beta_2: factor decay in [0, 1], default 0.999 (1: a sum, AdaGrad-like).
        epsilon: a number > 0, default 1e-12.
        weight_decay: decoupled decay >= 0, default 1e-5.
        max_preconditioner_dim: block size, integer >= 1, default 8192.
        precondition_frequency: steps between root computations, integer
            >= 1, default 100.
        start_preconditioning_step: the first step that uses the roots,
            integer >= 1, default None (= precondition_frequency).
        exponent_override: the inverse exponent e in (0, 1], default None
            (1 / (2 * order)).
        grafting: "adam" (default), "rmsprop", "adagrad", "sgd" or None.
        grafting_beta_2: in [0, 1), default 0.999.
        grafting_epsilon: a number > 0, default 1e-8.
        momentum: heavy-ball momentum in [0, 1), default 0. It acts on
            the grafted direction, on top of the beta_1 filter, as in
            Distributed Shampoo: use one or the other (their SGD recipe is
            beta_1=0, momentum=0.9); both at 0.9 with Nesterov and RMSprop
            grafting diverged on small models.
        nesterov: bool, default False (Nesterov form of that momentum; no
            effect at momentum 0).
        use_bias_correction: bool, default True.
        merge_dims: bool, default False (True: Distributed Shampoo's
            merging of small dimensions, see above).
    {{base_kwargs}}
    """

    _hyperparameters = ("beta_1", "beta_2", "epsilon", "max_preconditioner_dim", "precondition_frequency",
                        "start_preconditioning_step", "exponent_override", "grafting", "grafting_beta_2",
                        "grafting_epsilon", "momentum", "nesterov", "use_bias_correction", "merge_dims")

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-12, weight_decay=1e-5,
                 max_preconditioner_dim=8192, precondition_frequency=100, start_preconditioning_step=None,
                 exponent_override=None, grafting="adam", grafting_beta_2=0.999, grafting_epsilon=1e-8,
                 momentum=0.0, nesterov=False, use_bias_correction=True, merge_dims=False, **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        v = _validation
        self.beta_1 = v.unit_interval("beta_1", beta_1)
        self.beta_2 = v.number("beta_2", beta_2, low=0.0, high=1.0)
        self.epsilon = v.positive("epsilon", epsilon)
        self.max_preconditioner_dim = v.integer("max_preconditioner_dim", max_preconditioner_dim, low=1)
        self.precondition_frequency = v.integer("precondition_frequency", precondition_frequency, low=1)
        self.start_preconditioning_step = (
            None if start_preconditioning_step is None
            else v.integer("start_preconditioning_step", start_preconditioning_step, low=1)
        )
        self.exponent_override = (
            None if exponent_override is None
            else v.number("exponent_override", exponent_override, low=0.0, high=1.0, low_open=True)
        )
        if grafting is not None:
            grafting = v.choice("grafting", grafting, [g for g in GRAFTINGS if g])
        self.grafting = grafting
        self.grafting_beta_2 = v.unit_interval("grafting_beta_2", grafting_beta_2)
        self.grafting_epsilon = v.positive("grafting_epsilon", grafting_epsilon)
        self.momentum = v.unit_interval("momentum", momentum)
        self.nesterov = v.boolean("nesterov", nesterov)
        self.use_bias_correction = v.boolean("use_bias_correction", use_bias_correction)
        self.merge_dims = v.boolean("merge_dims", merge_dims)

    @property
    def _start(self):
        return self.start_preconditioning_step or self.precondition_frequency

    @property
    def _slot_names(self):
        names = []
        if self.grafting in ("adam", "rmsprop", "adagrad"):
            names.append("grafting_velocity")
        if self.beta_1 > 0:
            names.append("momentum")
        if self.momentum > 0:
            names.append("heavy_ball")
        return tuple(names)

    def _layout(self, variable):
        shape = _squeezed_shape(tuple(variable.shape), self.max_preconditioner_dim if self.merge_dims else None)
        return shape, [_chunks(n, self.max_preconditioner_dim) for n in shape]

    def _build_factors(self, index, variable):
        shape, chunks = self._layout(variable)
        blocks = [()]
        for sizes in chunks:
            blocks = [b + (n,) for b in blocks for n in sizes]
        return [
            [(self._factor(n, f"shampoo_factor_{index}_{b}_{d}"),
              self._factor(n, f"shampoo_root_{index}_{b}_{d}", identity=True)) for d, n in enumerate(block)]
            for b, block in enumerate(blocks)
        ]

    def _graft(self, x, velocity, t):
        if self.grafting in (None, "sgd"):
            return x
        if self.grafting == "adam" and self.use_bias_correction:
            velocity = ops.divide(velocity, 1.0 - ops.power(self.grafting_beta_2, t))
        return ops.divide(x, ops.add(ops.sqrt(velocity), self.grafting_epsilon))

    def update_step(self, gradient, variable, learning_rate):
        shape, chunks = self._layout(variable)
        blocks_state = self._factors[compat.variable_index(self, variable)]
        g = ops.reshape(ops.cast(gradient, "float32"), shape)
        theta = ops.reshape(ops.cast(variable, "float32"), shape)
        lr = ops.cast(learning_rate, "float32")
        t = ops.cast(self.iterations + 1, "float32")
        step = self.iterations + 1

        # 1. Factors, from the raw gradient.
        weight = 1.0 if self.beta_2 == 1.0 else 1.0 - self.beta_2
        g_blocks = _split_blocks(g, chunks)
        factors = []
        for g_block, pairs in zip(g_blocks, blocks_state):
            new = []
            for d, (factor, _) in enumerate(pairs):
                old = ops.convert_to_tensor(factor)
                if self.beta_2 != 1.0:
                    old = ops.multiply(old, self.beta_2)
                new.append(ops.add(old, ops.multiply(_mode_product(g_block, d), weight)))
            factors.append(new)

        # 2. The grafted method's second moment, from the raw gradient.
        velocity = None
        if self.grafting in ("adam", "rmsprop", "adagrad"):
            v_slot = self._slot("grafting_velocity", variable)
            velocity = ops.reshape(ops.cast(v_slot, "float32"), shape)
            if self.grafting == "adagrad":
                velocity = ops.add(velocity, ops.square(g))
            else:
                velocity = _lerp(velocity, ops.square(g), 1.0 - self.grafting_beta_2)
            self.assign(v_slot, ops.cast(ops.reshape(velocity, v_slot.shape), v_slot.dtype))

        # 3. Inverse roots, on the steps that refresh them.
        roots_now = [[ops.convert_to_tensor(root) for _, root in pairs] for pairs in blocks_state]
        flat_roots = [r for rs in roots_now for r in rs]
        if flat_roots:
            refresh = ops.logical_or(
                ops.logical_and(ops.equal(ops.mod(step, self.precondition_frequency), 0),
                                ops.greater(step, self._start)),
                ops.equal(step, self._start),
            )
            correction = 1.0
            if self.use_bias_correction and self.beta_2 < 1.0:
                correction = 1.0 - ops.power(self.beta_2, t)
            order = len(shape)

            def compute():
                out, oks = [], []
                for new, old in zip([f for fs in factors for f in fs], flat_roots):
                    root, ok = self._inverse_root(ops.divide(new, correction), old, order)
                    out.append(root)
                    oks.append(ok)
                return out, oks

            def keep():
                return list(flat_roots), [ops.convert_to_tensor(True) for _ in flat_roots]

            flat_new, oks = backend.cond_values(refresh, compute, keep)
            it = iter(flat_new)
            roots_now = [[next(it) for _ in rs] for rs in roots_now]
            self._count_failures(oks)
            for pairs, new_factors, roots in zip(blocks_state, factors, roots_now):
                for (factor_var, root_var), f, r in zip(pairs, new_factors, roots):
                    self.assign(factor_var, f)
                    self.assign(root_var, r)

        # 4. The filtered gradient.
        g_bar = g
        if self.beta_1 > 0:
            m_slot = self._slot("momentum", variable)
            m = _lerp(ops.reshape(ops.cast(m_slot, "float32"), shape), g, 1.0 - self.beta_1)
            self.assign(m_slot, ops.cast(ops.reshape(m, m_slot.shape), m_slot.dtype))
            g_bar = ops.divide(m, 1.0 - ops.power(self.beta_1, t)) if self.use_bias_correction else m

        # 5. Preconditioned, grafted direction.
        grafted = self._graft(g_bar, velocity, t)
        bar_blocks = _split_blocks(g_bar, chunks)
        graft_blocks = _split_blocks(grafted, chunks)
        directions = []
        for x, a, roots in zip(bar_blocks, graft_blocks, roots_now):
            p = _multiply_modes(x, roots)
            if self.grafting is not None:
                scale = ops.divide(ops.sqrt(ops.sum(ops.square(a))), ops.add(ops.sqrt(ops.sum(ops.square(p))), 1e-16))
                p = ops.multiply(p, scale)
            directions.append(p)
        direction = _join_blocks(directions, chunks)
        if self.grafting is not None:
            direction = ops.where(ops.less(step, self._start), grafted, direction)

        # 6-8. Decoupled weight decay, momentum, the step.
        if self._decay(variable):
            direction = ops.add(direction, ops.multiply(theta, self.weight_decay))
        if self.momentum > 0:
            b_slot = self._slot("heavy_ball", variable)
            buffer = ops.add(ops.multiply(ops.reshape(ops.cast(b_slot, "float32"), shape), self.momentum), direction)
            self.assign(b_slot, ops.cast(ops.reshape(buffer, b_slot.shape), b_slot.dtype))
            direction = ops.add(direction, ops.multiply(buffer, self.momentum)) if self.nesterov else buffer
        theta_new = ops.subtract(theta, ops.multiply(direction, lr))
        self.assign(variable, ops.cast(ops.reshape(theta_new, variable.shape), variable.dtype))

    def _inverse_root(self, matrix, previous, order):
        """(matrix + epsilon I)^(-e) by eigh, eigenvalues below epsilon moved
        up to it; the previous root where anything is not finite."""
        n = matrix.shape[0]
        eye = ops.eye(n, dtype="float32")
        finite_in = _all_finite(matrix)
        values, vectors = ops.eigh(ops.add(ops.where(finite_in, matrix, eye), ops.multiply(eye, self.epsilon)))
        smallest = ops.min(values)
        values = ops.where(ops.less(smallest, self.epsilon), ops.add(ops.subtract(values, smallest), self.epsilon),
                           values)
        exponent = self.exponent_override or 1.0 / (2 * order)
        root = ops.matmul(ops.multiply(vectors, ops.power(values, -exponent)[None, :]), ops.transpose(vectors))
        ok = ops.logical_and(finite_in, _all_finite(root))
        return ops.where(ok, root, previous), ok
