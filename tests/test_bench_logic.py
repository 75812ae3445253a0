"""optzoo-bench's arithmetic on hand-made numbers: time to target, epochs to
converge, the default target, learning-rate choice, successive halving, the
verdicts, and the command line's refusals. No training here."""

import inspect
import math

import pytest

from keras_optzoo import bench
from keras_optzoo.bench import analysis, protocol, train, verdicts
from keras_optzoo.bench import optimizers as bench_optimizers
from keras_optzoo.bench.run import Progress

# -- time to target and epochs to converge ----------------------------------------


def test_time_to_target_is_the_first_epoch_at_or_below_the_target():
    history = [2.0, 0.9, 0.5, 0.7, 0.3]
    # Epoch 3 is the first <= 0.5 (the later dip to 0.3 does not count); 20 steps per epoch, 0.075 s per step.
    assert analysis.time_to_target(history, 0.5, 20, 0.075) == pytest.approx((3, 60, 4.5))
    assert analysis.time_to_target(history, 0.31, 20, 0.075) == pytest.approx((5, 100, 7.5))
    assert analysis.time_to_target(history, 0.1, 20, 1.5) is None
    assert analysis.time_to_target([math.nan, math.nan], 0.5, 20, 1.5) is None  # a diverged run


def test_epochs_to_converge_follows_adaptive_stoppings_rule():
    # Relative improvements: 0.5, 0.2, 0.0005 (< 1e-3 at epoch 4), so the rule fires at epoch 4.
    losses = [2.0, 1.0, 0.8, 0.7996, 0.5]
    assert analysis.epochs_to_converge(losses, threshold=1e-3) == 4
    assert analysis.epochs_to_converge(losses, threshold=0.3) == 3  # 0.2 < 0.3 at epoch 3
    assert analysis.epochs_to_converge([2.0, 1.0, 0.5, 0.25], threshold=1e-3) is None


def _run(task, optimizer, best, regularization="none"):
    return dict(task=task, optimizer=optimizer, regularization=regularization, validation_loss=[9.0, best, best + 1])


def test_default_target_is_the_median_of_first_order_best_validation_losses():
    runs = [_run("t", "sgd", 0.5), _run("t", "sgd", 0.7), _run("t", "adam", 0.2), _run("t", "momentum", 0.4),
            _run("t", "hybrid", 0.01),  # second order: left out
            _run("t", "adam", 0.0, regularization="l2")]  # a Table 2 run: left out
    # Per optimizer: sgd mean(0.5, 0.7) = 0.6, adam 0.2, momentum 0.4 -> median 0.4.
    assert analysis.default_target(runs, ("sgd", "adam", "momentum")) == pytest.approx(0.4)
    runs.append(_run("u", "sgd", 1.5))
    assert analysis.targets(runs, ("sgd", "adam", "momentum")) == {"t": pytest.approx(0.4), "u": 1.5}
    assert analysis.targets(runs, ("sgd",), given=0.3) == {"t": 0.3, "u": 0.3}
    assert analysis.targets(runs, ("sgd", "adam", "momentum"), given={"u": 2.0}) == {"t": pytest.approx(0.4), "u": 2.0}


def test_stat_formats_mean_std_and_missing_values():
    assert analysis.Stat([1.0, 3.0]).format("{:.1f}") == "2.0 ± 1.0"
    assert analysis.Stat([None, 4.0]).format("{:.0f}", "not reached") == "4 (1 of 2: not reached)"
    assert analysis.Stat([None, None]).format("{:.0f}", "not reached") == "not reached"
    assert analysis.Stat([1.0, math.inf]).format() == "diverged"
    assert analysis.Stat([None, 4.0]).value() == math.inf  # missing counts as the worst value
    assert analysis.Stat([50.0, 60.0]).value(higher_is_better=True) == 55.0


# -- the learning-rate grid and its selection -----------------------------------------


def _signature_default(cls):
    return inspect.signature(cls.__init__).parameters["learning_rate"].default


@pytest.mark.parametrize("name", bench_optimizers.NAMES)
def test_grid_is_log_spaced_around_the_classs_default(name):
    spec = bench_optimizers.AVAILABLE[name]
    default = _signature_default(spec.cls)
    if not isinstance(default, float):  # None: Adagrad 0.01 (Keras's is 0.001), Newton 1 or 0.5 by method
        documented = {"Adagrad": 0.01, "Newton": {"diagonal": 1.0, "cg": 0.5}[spec.kwargs.get("method", "diagonal")]}
        default = documented[spec.class_name]
    grid = spec.grid()
    assert len(grid) >= 4 and grid == sorted(grid)
    assert default in grid
    assert grid[0] == pytest.approx(default / 10, rel=1e-3) and grid[-1] == pytest.approx(default * 10, rel=1e-3)
    ratios = [b / a for a, b in zip(grid, grid[1:])]
    assert all(r == pytest.approx(10 ** 0.5, rel=0.01) for r in ratios)


def test_choose_takes_the_lowest_validation_loss_and_the_smaller_rate_on_ties():
    assert protocol.choose({0.1: 0.5, 0.01: 0.3, 0.001: 0.4}) == 0.01
    assert protocol.choose({0.1: 0.3, 0.01: 0.3}) == 0.01
    assert protocol.choose({0.1: math.inf, 0.01: math.inf}) == 0.01  # all diverged


def test_survivors_are_the_best_finite_points():
    losses = {1.0: math.inf, 0.3: 0.2, 0.1: 0.5, 0.03: 0.4, 0.01: 0.9}
    assert protocol.survivors(losses) == [0.3, 0.03]
    assert protocol.survivors({1.0: math.inf, 0.1: math.inf}) == [0.1]


def test_planned_cost_counts_the_rung_the_survivors_and_the_seed_reruns():
    # 5 points x 1 epoch, 2 survivors x 4 more epochs, one point grown past an
    # edge x 5 epochs (planned; the real count is known only at run time),
    # 2 more random seeds x 5 epochs.
    assert protocol.planned_cost(5, 5, 3, tuned=True) == 5 + 8 + 5 + 10
    assert protocol.planned_cost(5, 100, 3, tuned=True) == 5 * 20 + 2 * 80 + 100 + 2 * 100
    assert protocol.planned_cost(1, 5, 3, tuned=False) == 15


def test_eta_weights_runs_by_their_expected_cost():
    progress = Progress(total=100.0)
    progress.start -= 10.0  # 10 s ago
    progress.advance(25.0)  # a quarter of the planned cost done in 10 s
    assert progress.eta() == pytest.approx(30.0, abs=0.5)


# -- verdicts on hand-made tables ----------------------------------------------------


def test_compare_counts_a_difference_within_the_spread_as_a_tie():
    assert verdicts.compare((0.2, 0.01), (0.3, 0.02)) == "win"  # lower loss by 0.1 > 0.02
    assert verdicts.compare((0.29, 0.02), (0.3, 0.02)) == "tie"
    assert verdicts.compare((0.4, 0.0), (0.3, 0.0)) == "loss"
    assert verdicts.compare((95.0, 0.5), (90.0, 1.0), higher_is_better=True) == "win"
    assert verdicts.compare((math.inf, 0.0), (100.0, 5.0)) == "loss"  # not reached vs reached
    assert verdicts.compare((math.inf, 0.0), (math.inf, 0.0)) == "tie"


def test_verdict_holds_only_when_every_comparison_is_won():
    assert verdicts.verdict(["win", "win"]) == "holds"
    assert verdicts.verdict(["win", "tie"]) == "mixed"
    assert verdicts.verdict(["tie", "loss"]) == "does not hold"
    assert verdicts.verdict([]) is None
    assert verdicts.combine(["holds", "holds"]) == "holds"
    assert verdicts.combine(["mixed"]) == "mixed"
    assert verdicts.combine(["does not hold", "holds"]) == "mixed"
    assert verdicts.combine(["does not hold", "does not hold"]) == "does not hold"


def _runs(task, metric, values, regularization="none", key="optimizer"):
    """Hand-made runs: {name: [value per random seed]}."""
    base = dict(task=task, regularization=regularization, optimizer="hybrid")
    return [dict(base, **{key: name, metric: v}) for name, vs in values.items() for v in vs]


def test_paper_001_claim_on_hand_made_tables():
    adaptive_win = {"adagrad": [97, 97], "amsgrad": [96, 96], "adam": [98, 98],
                    "momentum": [90, 91], "nesterov": [92, 92], "rmsprop": [80, 80]}
    mixed = dict(adaptive_win, momentum=[99, 99])  # Momentum beats all three
    runs = _runs("mnist-mlp", "test_accuracy_pct", adaptive_win) + _runs("karate", "test_accuracy_pct", mixed)
    claim = verdicts.adaptive_claim(runs)
    assert [(p.scope, p.verdict) for p in claim.parts] == [("mnist-mlp", "holds"), ("karate", "mixed")]
    assert claim.verdict == "mixed"
    assert "9 of 9 comparisons won" in claim.parts[0].text and "6 of 9" in claim.parts[1].text
    assert "adam 98.00" in claim.parts[0].text
    reverse = {k: [200 - x for x in v] for k, v in adaptive_win.items()}
    assert verdicts.adaptive_claim(_runs("karate", "test_accuracy_pct", reverse)).verdict == "does not hold"


def test_paper_000_hybrid_claim_on_hand_made_tables():
    def runs(steps, train, val):
        out = []
        for name in ("hybrid", "sgd", "adam"):
            out.append(dict(task="mnist-mlp", regularization="none", optimizer=name, steps_to_target=steps[name],
                            final_train_loss=train[name], final_validation_loss=val[name]))
        return out

    fast = runs({"hybrid": 100, "sgd": 300, "adam": 200}, {"hybrid": 0.1, "sgd": 0.3, "adam": 0.2},
                {"hybrid": 0.2, "sgd": 0.4, "adam": 0.3})
    assert verdicts.hybrid_claim(fast, ("sgd", "adam")).verdict == "holds"
    never = runs({"hybrid": None, "sgd": 300, "adam": 200}, {"hybrid": 0.5, "sgd": 0.3, "adam": 0.2},
                 {"hybrid": 0.6, "sgd": 0.4, "adam": 0.3})
    claim = verdicts.hybrid_claim(never, ("sgd", "adam"))
    assert claim.verdict == "does not hold"
    assert "hybrid not reached vs best first-order adam 200" in claim.parts[0].text
    lower_loss_only = runs({"hybrid": 400, "sgd": 300, "adam": 200}, {"hybrid": 0.1, "sgd": 0.3, "adam": 0.2},
                           {"hybrid": 0.2, "sgd": 0.4, "adam": 0.3})
    assert verdicts.hybrid_claim(lower_loss_only, ("sgd", "adam")).verdict == "mixed"


def test_second_order_against_the_best_first_order_on_hand_made_tables():
    """The users' question, per task: a second-order optimizer must win against
    the first-order one with the fewest steps (and, separately, seconds)."""
    def runs(task, table):  # {name: [(steps, seconds) per seed]}
        return [dict(task=task, regularization="none", optimizer=name, steps_to_target=st, seconds_to_target=sec)
                for name, seeds in table.items() for st, sec in seeds]

    first, second = ("sgd", "adam"), ("soap", "sophiah")
    both = runs("mnist-cnn", {"sgd": [(900, 9.0), (1000, 10.0)], "adam": [(400, 4.0), (420, 4.2)],
                              "soap": [(200, 3.0), (210, 3.1)], "sophiah": [(500, 20.0), (520, 21.0)]})
    steps_only = runs("karate", {"sgd": [(90, 0.9), (100, 1.0)], "adam": [(40, 0.4), (42, 0.42)],
                                 "soap": [(20, 0.8), (21, 0.82)], "sophiah": [(None, None), (50, 2.0)]})
    claim = verdicts.second_order_claim(both + steps_only, first, second)
    assert [(p.scope, p.verdict) for p in claim.parts] == [("mnist-cnn", "holds"), ("karate", "mixed")]
    assert claim.verdict == "mixed"
    assert claim.parts[0].text.startswith("yes, soap.") and "best first-order adam 410 ± 10" in claim.parts[0].text
    assert claim.parts[1].text.startswith("in steps only.")
    assert "sophiah 50 (1 of 2: not reached) (loss)" in claim.parts[1].text
    # The best first-order one reached the target on the most seeds: SGD on both beats Adam's one fast run.
    partial = runs("karate", {"sgd": [(90, 0.9), (100, 1.0)], "adam": [(10, 0.1), (None, None)],
                              "soap": [(50, 0.5), (52, 0.52)]})
    part = verdicts.second_order_claim(partial, first, second).parts[0]
    assert "best first-order sgd 95 ± 5" in part.text and part.verdict == "holds"
    none = runs("karate", {"adam": [(40, 0.4), (42, 0.42)], "soap": [(80, 0.8), (84, 0.84)]})
    assert verdicts.second_order_claim(none, first, second).verdict == "does not hold"
    assert not verdicts.second_order_claim(none, first, ()).parts  # nothing to compare: no claim


def test_steady_step_time_leaves_out_the_first_epoch_and_the_validation_pass():
    run = dict(train_seconds=[5.0, 1.0, 1.2, 1.1], steps=[10, 10, 10, 5], epoch_seconds=[6.0, 2.0, 2.2, 2.1],
               steps_per_epoch=10)
    # Per step: 0.5 (compiling, left out), 0.1, 0.12, 0.22 (a last, shorter epoch): the median is 0.12.
    assert train.steady_step_seconds(run) == pytest.approx(0.12)
    old = dict(epoch_seconds=[6.0, 2.0, 2.2], steps_per_epoch=10)  # a run recorded before train_seconds
    assert train.steady_step_seconds(old) == pytest.approx(0.21)


def test_paper_000_table_2_ranking_on_hand_made_tables():
    paper = {"l2": [90.2], "l1": [89.0], "dropout": [88.9], "none": [86.0]}  # Table 2's own numbers
    claim = verdicts.regularization_claim(_runs("mnist-mlp", "test_accuracy_pct", paper, key="regularization"))
    assert claim.verdict == "holds" and "l2 > l1 > dropout > none" in claim.parts[0].text
    swapped = dict(paper, none=[89.5])  # none now beats l1 and dropout: 2 of the 6 pairs lost
    claim = verdicts.regularization_claim(_runs("mnist-mlp", "test_accuracy_pct", swapped, key="regularization"))
    assert claim.verdict == "mixed" and "4 of 6 comparisons won" in claim.parts[0].text
    reverse = {"l2": [80.0], "l1": [82.0], "dropout": [84.0], "none": [86.0]}
    claim = verdicts.regularization_claim(_runs("mnist-mlp", "test_accuracy_pct", reverse, key="regularization"))
    assert claim.verdict == "does not hold"


# -- the command line -------------------------------------------------------------


@pytest.mark.parametrize(
    "args, words",
    [
        (["--protocol", "grid"], ["--protocol", "tuned", "fixed"]),
        (["--target", "-1"], ["--target", "> 0"]),
        (["--target", "cifar=0.3"], ["--target", "mnist-mlp", "karate"]),
        (["--task", "mnist-rnn"], ["--task", "mnist-cnn"]),
        (["--regularization-optimizers", "lbfgs"], ["--regularization-optimizers", "hybrid"]),
        (["--data", "{empty}"], ["--data", "train-images-idx3-ubyte", "embedded"]),
        (["--data", "{missing}"], ["--data", "auto, keras, embedded"]),
        (["--stop-threshold", "-1"], ["--stop-threshold", ">= 0"]),
        (["--suite", "huge"], ["--suite", "default", "full"]),
        (["--task", "my_module:not a name"], ["--task", "module:function"]),
        (["--task", "mod:fn,karate"], ["--task", "module:function", "alone"]),
    ],
)
def test_bad_arguments_exit_2_naming_the_option_and_valid_values(args, words, capsys, tmp_path):
    args = [a.format(empty=tmp_path, missing=tmp_path / "nowhere") for a in args]
    with pytest.raises(SystemExit) as info:
        bench.main(args + ["--out", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    for word in words:
        assert word in err, err
    assert not (tmp_path / "out").exists()


def test_help_lists_every_optimizer_name_and_the_grid(capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in bench_optimizers.NAMES:
        assert name in text
    assert "x 0.1, 0.316, 1, 3.16, 10" in text and "14 (TensorFlow) minutes" in text and "42 min on JAX" in text


def test_every_optimizer_has_a_plot_style_and_bar_hatch():
    """A family's line style must have a bar hatch (SOAP and Shampoo's new
    family once broke the bar plots after a whole run)."""
    from keras_optzoo.bench import plots

    for name in bench_optimizers.NAMES:
        style = bench_optimizers.style(name)
        assert style["linestyle"] in plots.HATCHES, name


def test_suites_choose_the_optimizers_of_each_task(tmp_path):
    out = ["--out", str(tmp_path)]
    names = list(bench_optimizers.NAMES)
    default = bench.parse_args(out).plan
    papers = ["gd", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "amsgrad", "hybrid", "sophiah",
              "soap", "shampoo"]
    assert default["mnist-mlp"] == papers and default["karate"] == papers
    assert default["mnist-cnn"] == ["momentum", "adam", "soap", "shampoo"]
    assert default["shakespeare"] == ["adamw", "soap", "sophiah"]
    # Every claim the verdicts check has its optimizers in the default run.
    assert set(verdicts.ADAPTIVE + verdicts.CLASSIC) <= set(papers) and "hybrid" in papers
    assert list(default) == list(bench.TASK_NAMES)
    assert all(v == names for v in bench.parse_args(out + ["--suite", "full"]).plan.values())
    asked = bench.parse_args(out + ["--optimizers", "adam,soap"]).plan
    assert all(v == ["adam", "soap"] for v in asked.values()) and list(asked) == list(bench.TASK_NAMES)
    assert bench.parse_args(out + ["--task", "shakespeare"]).plan == {"shakespeare": names}
    assert bench.parse_args(out + ["--task", "my_task:build"]).task == "my_task:build"
