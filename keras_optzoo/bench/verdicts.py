"""The papers' claims, checked against a run's numbers.

Every claim is a set of "A beats B on metric M" comparisons. One comparison
is a *win* when A's mean over random seeds is better than B's by more than
the larger of their two standard deviations, a *loss* when it is worse by
more than that, and a *tie* otherwise (a run that diverged or did not reach
the target counts as the worst value). A claim **holds** when every
comparison is a win, **does not hold** when none is, and is **mixed**
otherwise. Over several tasks a claim holds when it holds on every task, does
not hold when it holds on none and fails on all, and is mixed otherwise.

Tables are {name: (mean, std)}; `table()` builds one from runs.
"""

import math
from typing import NamedTuple

from keras_optzoo.bench import analysis

HOLDS, FAILS, MIXED = "holds", "does not hold", "mixed"


def compare(a, b, higher_is_better=False):
    """"win", "tie" or "loss" for A = (mean, std) against B."""
    (mean_a, std_a), (mean_b, std_b) = a, b
    if not math.isfinite(mean_a) or not math.isfinite(mean_b):
        if mean_a == mean_b:
            return "tie"
        better = mean_a > mean_b if higher_is_better else mean_a < mean_b
        return "win" if better else "loss"
    margin = (mean_a - mean_b) if higher_is_better else (mean_b - mean_a)
    noise = max(std_a or 0.0, std_b or 0.0)
    return "win" if margin > noise else "loss" if margin < -noise else "tie"


def verdict(outcomes):
    """HOLDS if every comparison is a win, FAILS if none is, else MIXED."""
    wins = [o == "win" for o in outcomes]
    if not wins:
        return None
    return HOLDS if all(wins) else FAILS if not any(wins) else MIXED


def combine(task_verdicts):
    """Over tasks: HOLDS if every task's verdict holds, FAILS if every one fails, else MIXED."""
    found = [v for v in task_verdicts if v is not None]
    if not found:
        return None
    return HOLDS if all(v == HOLDS for v in found) else FAILS if all(v == FAILS for v in found) else MIXED


def pairwise(table, better, worse, higher_is_better=False):
    """Every name in `better` against every name in `worse` (those in the
    table): (verdict, [(a, b, outcome)])."""
    pairs = [(a, b, compare(table[a], table[b], higher_is_better))
             for a in better if a in table for b in worse if b in table and b != a]
    return verdict([o for _, _, o in pairs]), pairs


def table(runs, metric, key="optimizer", higher_is_better=False):
    """{runs' `key`: (mean, std) of `metric`}, worst value for diverged or missing."""
    out = {}
    for (name,), group in analysis.groups(runs, key).items():
        s = analysis.Stat([r.get(metric) for r in group])
        out[name] = (s.value(higher_is_better), s.std or 0.0)
    return out


class Part(NamedTuple):
    scope: str  # a task (or task and optimizer)
    verdict: str
    text: str  # the numbers


class Claim(NamedTuple):
    paper: str
    statement: str
    rule: str
    verdict: str
    parts: list


def _fmt(value, fmt):
    return fmt.format(value) if math.isfinite(value) else ("not reached" if value > 0 else "-")


def _numbers(tbl, names, fmt):
    return ", ".join(f"{n} {_fmt(tbl[n][0], fmt)}" for n in names if n in tbl)


def _wins(pairs):
    return f"{sum(o == 'win' for *_, o in pairs)} of {len(pairs)} comparisons won"


HYBRID_METRICS = (("steps_to_target", "steps to the target validation loss", "{:.0f}"),
                  ("final_train_loss", "final training loss", "{:.4f}"),
                  ("final_validation_loss", "final validation loss", "{:.4f}"))


def hybrid_claim(runs, first_order):
    """Paper 000: the Hybrid method converges faster and reaches a lower loss
    than the first-order methods."""
    parts = []
    for task, task_runs in _by_task(runs):
        names = [n for n in first_order if any(r["optimizer"] == n for r in task_runs)]
        if not names or not any(r["optimizer"] == "hybrid" for r in task_runs):
            continue
        outcomes, texts = [], []
        for metric, words, fmt in HYBRID_METRICS:
            tbl = table(task_runs, metric)
            v, pairs = pairwise(tbl, ["hybrid"], names)
            outcomes += [o for *_, o in pairs]
            best = min(names, key=lambda n: tbl[n][0])
            texts.append(f"{words}: hybrid {_fmt(tbl['hybrid'][0], fmt)} vs best first-order {best} "
                         f"{_fmt(tbl[best][0], fmt)} ({_wins(pairs)})")
        parts.append(Part(task, verdict(outcomes), "; ".join(texts)))
    return Claim("paper 000", "the Hybrid method converges faster and reaches a lower loss than the "
                 "first-order methods", "Hybrid against every first-order optimizer on steps to the target, "
                 "final training loss and final validation loss", combine([p.verdict for p in parts]), parts)


TABLE2_ORDER = ("l2", "l1", "dropout", "none")  # paper 000, Table 2: 90.2 %, 89.0 %, 88.9 %, 86.0 %


def regularization_claim(runs):
    """Paper 000 Table 2's ranking by final accuracy: L2 > L1 > Dropout > none."""
    parts = []
    mlp = [r for r in runs if r["task"] == "mnist-mlp"]
    for (name,), group in analysis.groups(mlp, "optimizer").items():
        tbl = table(group, "test_accuracy_pct", key="regularization", higher_is_better=True)
        if len(tbl) < 2 or set(tbl) == {"none"}:
            continue
        pairs = [(a, b, compare(tbl[a], tbl[b], True)) for i, a in enumerate(TABLE2_ORDER) if a in tbl
                 for b in TABLE2_ORDER[i + 1:] if b in tbl]
        ranking = " > ".join(sorted(tbl, key=lambda k: -tbl[k][0]))
        parts.append(Part(f"mnist-mlp, {name}", verdict([o for *_, o in pairs]),
                          f"test accuracy (%): {_numbers(tbl, TABLE2_ORDER, '{:.2f}')}; observed ranking "
                          f"{ranking} ({_wins(pairs)})"))
    return Claim("paper 000, Table 2", "regularization ranks L2 > L1 > Dropout (0.5) > none by final accuracy",
                 "each regularization against each one ranked below it in Table 2, on test accuracy",
                 combine([p.verdict for p in parts]), parts)


ADAPTIVE, CLASSIC = ("adagrad", "amsgrad", "adam"), ("momentum", "nesterov", "rmsprop")


def adaptive_claim(runs):
    """Paper 001: AdaGrad, AMSGrad and Adam beat Momentum, NAG and RMSProp (test accuracy)."""
    parts = []
    for task, task_runs in _by_task(runs):
        tbl = table(task_runs, "test_accuracy_pct", higher_is_better=True)
        v, pairs = pairwise(tbl, ADAPTIVE, CLASSIC, higher_is_better=True)
        if v is not None:
            parts.append(Part(task, v, f"test accuracy (%): {_numbers(tbl, ADAPTIVE + CLASSIC, '{:.2f}')} "
                                       f"({_wins(pairs)})"))
    return Claim("paper 001", "AdaGrad, AMSGrad and Adam beat Momentum, NAG and RMSProp on MNIST and on Karate",
                 "each of AdaGrad, AMSGrad, Adam against each of Momentum, NAG, RMSProp, on test accuracy",
                 combine([p.verdict for p in parts]), parts)


SPEED = (("steps_to_target", "steps", "{:.0f}"), ("seconds_to_target", "seconds", "{:.2f}"))


def second_order_claim(runs, first_order, second_order):
    """The user's question: does any second-order (or Kronecker-factored)
    optimizer reach the target validation loss sooner than the best tuned
    first-order one, in steps and in seconds? Per task, the best first-order
    optimizer is the one that reached the target on the most random seeds,
    then with the fewest steps (and, separately, seconds) where it did; each
    second-order optimizer is compared with it on that metric (a run that did
    not reach the target counts as the worst value, as everywhere). Holds on
    a task when one second-order optimizer wins on both, is mixed when wins
    exist on one metric only, does not hold when none wins."""
    parts = []
    for task, task_runs in _by_task(runs):
        firsts = [n for n in first_order if any(r["optimizer"] == n for r in task_runs)]
        seconds = [n for n in second_order if any(r["optimizer"] == n for r in task_runs)]
        if not firsts or not seconds:
            continue
        won, texts = {}, []
        for metric, words, fmt in SPEED:
            tbl = table(task_runs, metric)
            stats = {n: analysis.Stat([r.get(metric) for r in task_runs if r["optimizer"] == n])
                     for n in firsts + seconds}
            best = min(firsts, key=lambda n: (stats[n].missing, stats[n].mean if stats[n].mean is not None
                                              else math.inf, firsts.index(n)))
            outcomes = {n: compare(tbl[n], tbl[best]) for n in seconds}
            won[metric] = {n for n, o in outcomes.items() if o == "win"}
            shown = lambda n: stats[n].format(fmt, "not reached")
            texts.append(f"{words} to the target: best first-order {best} {shown(best)}; "
                         + ", ".join(f"{n} {shown(n)} ({outcomes[n]})" for n in seconds))
        both = won["steps_to_target"] & won["seconds_to_target"]
        v = HOLDS if both else MIXED if any(won.values()) else FAILS
        answer = (f"yes, {', '.join(sorted(both))}" if both else
                  "in steps only" if won["steps_to_target"] else "in seconds only" if won["seconds_to_target"]
                  else "no")
        parts.append(Part(task, v, f"{answer}. " + "; ".join(texts)))
    return Claim("this benchmark", "a second-order optimizer beats the best tuned first-order one, in steps and "
                 "in seconds to the target validation loss",
                 "each second-order and Kronecker-factored optimizer against the first-order one with the fewest "
                 "steps (then, the fewest seconds) to the target", combine([p.verdict for p in parts]), parts)


def _by_task(runs):
    plain = [r for r in runs if r["regularization"] == "none"]
    return [(task, [r for r in plain if r["task"] == task]) for task in dict.fromkeys(r["task"] for r in plain)]


def claims(runs, first_order, second_order=()):
    return [c for c in (second_order_claim(runs, first_order, second_order), hybrid_claim(runs, first_order),
                        regularization_claim(runs), adaptive_claim(runs)) if c.parts]
