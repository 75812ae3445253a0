"""The two protocols.

fixed (paper 001's): every optimizer at one learning rate, on every seed.

tuned (the default): for each task and optimizer, every learning rate of the
optimizer's grid (`optimizers.GRID_FACTORS` times its default) trains on seed
0 for the first `rung` epochs; all but the `keep` best by validation loss
(and any that diverged) stop there (successive halving); the survivors
train on to the full budget and the best by final validation loss is the
chosen learning rate. A choice at the lowest or highest point of the grid
is not tuned: the grid grows one point (x or / sqrt(10)) beyond that edge,
trained to the full budget, until the best is interior, the new point
diverges or is worse, or `GROW` points were added (then the choice is
reported as still at the edge). That run is seed 0's final run; seeds
1..N-1 re-run it.
Selection sees `Split.without_test()`: the test set is not looked at.
"""

import math

from keras_optzoo.bench.train import extend, final_value

KEEP = 2  # grid points that survive the first rung
GROW = 3  # points added at most beyond an edge of the grid
STEP = math.sqrt(10)  # the grid's ratio (optimizers.GRID_FACTORS)


def _at_edge(lr, tried):
    """Whether `lr` is the lowest or highest of the (sorted) rates tried."""
    return len(tried) > 1 and lr in (tried[0], tried[-1])


def rung_epochs(epochs):
    """The first rung: a fifth of the budget, at least one epoch."""
    return max(1, round(epochs / 5))


def choose(validation_losses):
    """The learning rate with the lowest validation loss ({lr: loss}); a tie,
    or a grid where every point diverged (all +inf), goes to the smaller rate."""
    return min(validation_losses, key=lambda lr: (validation_losses[lr], lr))


def survivors(validation_losses, keep=KEEP):
    """The `keep` best finite grid points, best first."""
    finite = {lr: v for lr, v in validation_losses.items() if math.isfinite(v)}
    return sorted(finite, key=lambda lr: (finite[lr], lr))[:keep] or [choose(validation_losses)]


def select_learning_rate(trainer, split, grid, epochs, progress, cost):
    """Successive halving over `grid` on seed 0 of `split` (which must hold no
    test data). Returns (chosen lr, {lr: curves}, grid rows, chosen snapshot)."""
    if split.x_test is not None or split.y_test is not None:
        raise ValueError("learning-rate selection must not see the test set: pass `split.without_test()`")
    rung = min(rung_epochs(epochs), epochs)
    curves, snapshots = {}, {}
    for lr in grid:
        trainer.start(split, 0, lr)
        curves[lr] = trainer.fit(split, 0, rung)
        snapshots[lr] = trainer.snapshot()
        progress.advance(cost * rung)
    at_rung = {lr: final_value(c["validation_loss"]) for lr, c in curves.items()}
    alive = survivors(at_rung) if rung < epochs else list(grid)
    for lr in alive:
        if rung < epochs and len(curves[lr]["validation_loss"]) == rung:
            trainer.restore(snapshots[lr])
            curves[lr] = extend(curves[lr], trainer.fit(split, 0, epochs, initial_epoch=rung))
            snapshots[lr] = trainer.snapshot()
        progress.advance(cost * (epochs - rung))
    progress.advance(cost * (epochs - rung) * max(0, min(KEEP, len(grid)) - len(alive)))
    final = {lr: final_value(curves[lr]["validation_loss"]) for lr in alive}
    chosen = choose(final)
    tried, grown = sorted(grid), []
    while len(grown) < GROW and _at_edge(chosen, tried):
        lr = float(f"{chosen * (STEP if chosen == tried[-1] else 1 / STEP):.3g}")
        trainer.start(split, 0, lr)
        curves[lr] = trainer.fit(split, 0, epochs)
        snapshots[lr] = trainer.snapshot()
        progress.advance(cost * epochs)
        at_rung[lr] = final_value(curves[lr]["validation_loss"][:rung])
        final[lr] = final_value(curves[lr]["validation_loss"])
        tried, grown = sorted(tried + [lr]), grown + [lr]
        if not final[lr] < final[chosen]:  # worse, or diverged (NaN/inf): the best is now interior
            break
        chosen = lr
    at_edge = _at_edge(chosen, tried)
    rows = [dict(learning_rate=lr, validation_loss_at_rung=at_rung[lr], rung_epochs=rung,
                 epochs_run=len(curves[lr]["validation_loss"]), survived=lr in final,
                 final_validation_loss=final.get(lr, math.nan), chosen=lr == chosen, grown=lr in grown,
                 at_edge=at_edge and lr == chosen) for lr in list(grid) + grown]
    return chosen, curves, rows, snapshots[chosen]


def planned_cost(grid_size, epochs, seeds, tuned):
    """Epochs of training (times a run's cost) one task x optimizer will take."""
    if not tuned:
        return seeds * epochs
    rung = min(rung_epochs(epochs), epochs)
    # The grid's growth is not known in advance; one added point is planned for.
    return grid_size * rung + min(KEEP, grid_size) * (epochs - rung) + epochs + (seeds - 1) * epochs
