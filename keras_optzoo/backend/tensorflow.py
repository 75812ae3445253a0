"""TensorFlow: Hessian-vector products with nested GradientTapes."""

import tensorflow as tf

import keras

from keras_optzoo.curvature import _steps


def _dot(xs, ys):
    return tf.add_n([tf.reduce_sum(x * tf.cast(y, x.dtype)) for x, y in zip(xs, ys)])


def _nested_hvp(loss_of, variables):
    def hvp(vectors):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = loss_of()
            grads = inner.gradient(loss, variables)
            dot = _dot(grads, vectors)
        return outer.gradient(dot, variables)

    return hvp


def loss_and_hvp(model, loss_fn, x, y):
    variables = model.trainable_variables

    def loss_of():
        loss = loss_fn(y, model(x, training=False))
        return _steps.check_scalar(loss) + tf.add_n([tf.zeros(())] + [tf.cast(l, loss.dtype) for l in model.losses])

    with tf.GradientTape() as tape:
        loss = loss_of()
    grads = tape.gradient(loss, variables)
    return loss, grads, _nested_hvp(loss_of, variables)


def rademacher(variables, seed, step):
    step = tf.cast(step, tf.int32)
    out = []
    for i, v in enumerate(variables):
        bits = tf.random.stateless_uniform(
            tuple(v.shape), seed=tf.stack([tf.constant(seed + 104729 * i, tf.int32), step]),
            minval=0, maxval=2, dtype=tf.int32,
        )
        out.append(tf.cast(2 * bits - 1, v.dtype))
    return out


def _replica_sum(tensors):
    context = tf.distribute.get_replica_context()
    return list(context.all_reduce(tf.distribute.ReduceOp.SUM, list(tensors)))


def train_step(model, data):
    outer, opt = _steps.optimizers_of(model)
    x, y, sample_weight = _steps.unpack(data)

    def loss_of():
        y_pred = model(x, training=True)
        return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True), y_pred

    with tf.GradientTape() as tape:
        loss, y_pred = loss_of()
        model._loss_tracker.update_state(loss, sample_weight=tf.shape(next(i for i in keras.tree.flatten(x) if i is not None))[0])
        scaled = outer.scale_loss(loss)
    variables = model.trainable_weights  # after the forward pass, which builds a subclassed model
    if not outer.built:
        outer.build(variables)
    grads = tape.gradient(scaled, variables)
    slots = opt.curvature_slots()
    # The curvature comes from the unscaled loss (the HVP of the loss itself).
    curvature_grads = _steps.unscaled(outer, grads, lambda: outer.scale_loss(tf.ones((), grads[0].dtype)))
    # Under tf.distribute each replica sees its share of the batch, and Keras
    # scales each replica's loss by 1 / replicas: the global HVP (and
    # gradient) is the sum over replicas, which keeps the Hutchinson
    # estimates and the CG solve equal to single-device training.
    context = tf.distribute.get_replica_context()
    distributed = context is not None and context.num_replicas_in_sync > 1
    new = _steps.refreshed_curvature(
        opt, _nested_hvp(lambda: loss_of()[0], variables), curvature_grads, variables,
        opt.iterations, [s.value for s in slots], replica_sum=_replica_sum if distributed else None,
    )
    for slot, value in zip(slots, new):
        slot.assign(value)
    opt.curvature_supplied = True
    outer.apply_gradients(zip(grads, variables))
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


# -- fused update kernels ------------------------------------------------------
# TensorFlow's ResourceApply* training ops update a variable and its slots in
# one multi-threaded kernel (and lower to XLA under jit_compile). They run per
# variable from `update_step`, which Keras calls inside its tf.distribute
# update, so the cross-replica gradient sum and the per-replica variable
# update stay Keras's own.
def _handle(variable):
    return (variable.value if isinstance(variable, keras.Variable) else variable).handle


# Kinds whose kernel also applies the decoupled weight decay: none here.
DECAY_IN_KERNEL = set()


def fused_update(optimizer, spec, grads, variables, learning_rate):
    return False  # per variable, in fused_update_one


def fused_update_one(optimizer, spec, gradient, variable, learning_rate):
    if isinstance(gradient, tf.IndexedSlices):
        return False
    dtype = variable.dtype
    if not tf.as_dtype(dtype).is_floating:
        return False
    kind, hp = spec
    lr = tf.cast(learning_rate, dtype)
    g = tf.cast(gradient, dtype)
    var = _handle(variable)

    def slot(name):
        return _handle(optimizer._slot(name, variable))

    def const(x):
        return tf.constant(x, dtype=dtype)

    raw = tf.raw_ops
    if kind == "sgd":
        raw.ResourceApplyGradientDescent(var=var, alpha=lr, delta=g)
    elif kind in ("momentum", "nesterov"):
        # accum <- mu accum + lr g; theta <- theta - accum (Nesterov: - lr g - mu accum).
        raw.ResourceApplyMomentum(
            var=var, accum=slot("velocity"), lr=const(1.0), grad=g * lr, momentum=const(hp["momentum"]),
            use_nesterov=kind == "nesterov",
        )  # fmt: skip
    elif kind == "adagrad":
        raw.ResourceApplyAdagradV2(var=var, accum=slot("accumulator"), lr=lr, epsilon=const(hp["epsilon"]), grad=g)
    elif kind == "adam" and not hp["amsgrad"]:
        # (ResourceApplyAdamWithAmsgrad has no XLA kernel, so AMSGrad runs
        # the keras.ops code, which XLA or Grappler fuse.)
        # The kernel adds epsilon to sqrt(v) before the bias correction; eps *
        # sqrt(1 - beta_2^t) there is eps after it, as in our Adam.
        step = tf.cast(optimizer.iterations + 1, dtype)
        beta_1_power = tf.pow(const(hp["beta_1"]), step)
        beta_2_power = tf.pow(const(hp["beta_2"]), step)
        args = dict(
            var=var, m=slot("momentum"), v=slot("velocity"), beta1_power=beta_1_power, beta2_power=beta_2_power,
            lr=lr, beta1=const(hp["beta_1"]), beta2=const(hp["beta_2"]),
            epsilon=hp["epsilon"] * tf.sqrt(1.0 - beta_2_power), grad=g,
        )  # fmt: skip
        raw.ResourceApplyAdam(**args)
    else:
        return False
    return True


def cond_effects(pred, true_fn, false_fn):
    """Runs one of two side-effecting branches (tf.cond in graphs)."""
    def run(fn):
        def branch():
            fn()

        return branch

    keras.ops.cond(pred, run(true_fn), run(false_fn))
