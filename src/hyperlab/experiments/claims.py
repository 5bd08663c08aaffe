"""Claims as data: what a paper states, where, the rule that judges it, the numbers we measured,
and whether it held.

``results.json["claims"]`` is a list of [`Claim`][hyperlab.experiments.claims.Claim] records; the
printed comparison, the
report and ``REPRODUCTION.md`` read only this list. Each claim carries its ``rule`` in words a
reader can recompute from its ``evidence``; ``held`` is ``None`` ("not judged") when the numbers
cannot decide it, and ``not_judged`` says why (a comparison within noise, sides at chance, too
few repetitions to estimate the noise, a model that did not train, a vacuous statement).

The rules here are the paper's sentences made precise, one helper per kind of sentence:
[`compare`][hyperlab.experiments.claims.compare] ("A is lower than B"),
[`at_every`][hyperlab.experiments.claims.at_every] (... at every swept value),
[`monotone`][hyperlab.experiments.claims.monotone] ("A improves as k grows", judged over every
swept value, not its endpoints),
[`no_improvement`][hyperlab.experiments.claims.no_improvement] ("A does not improve as k grows",
only for a model that trained) and
[`at_least`][hyperlab.experiments.claims.at_least] (a threshold). Differences count only beyond
``NOISE_SE`` standard errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "NOISE_SE",
    "Claim",
    "Verdict",
    "at_every",
    "at_least",
    "binomial_se",
    "compare",
    "format_evidence",
    "judged",
    "monotone",
    "no_improvement",
    "within",
]

#: A difference is real only beyond this many standard errors (the issue's "2 SE" rule).
NOISE_SE = 2.0


@dataclass(frozen=True)
class Verdict:
    """The outcome of a rule: ``held`` (None: not judged, ``reason`` says why), the rule in
    words, and the numbers it rests on."""

    held: bool | None
    rule: str
    evidence: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None


@dataclass(frozen=True)
class Claim:
    """One of the paper's statements, checked on one run."""

    claim: str
    paper_ref: str
    held: bool | None
    evidence: dict[str, Any] = field(default_factory=dict)
    #: how ``held`` follows from ``evidence``, in words
    rule: str = ""
    #: why the claim is not judged (``held`` is None)
    not_judged: str | None = None

    def __post_init__(self) -> None:
        if self.held is not None:
            object.__setattr__(self, "held", bool(self.held))

    @classmethod
    def of(cls, claim: str, paper_ref: str, verdict: Verdict, **evidence: Any) -> Claim:
        """A claim judged by ``verdict``; ``evidence`` adds context beside the verdict's."""
        return cls(claim, paper_ref, verdict.held, {**evidence, **verdict.evidence},
                   rule=verdict.rule, not_judged=verdict.reason)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Claim:
        return cls(d["claim"], d.get("paper_ref", ""), d.get("held"), dict(d.get("evidence", {})),
                   d.get("rule", ""), d.get("not_judged"))  # fmt: skip


def judged(held: bool, *numbers: Any) -> bool | None:
    """``held``, or ``None`` when a number it rests on is missing or not finite."""
    for v in numbers:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return None
    return bool(held)


def _finite(values: Sequence[Any]) -> np.ndarray:
    a = np.array([float("nan") if v is None else float(v) for v in values], dtype=float)
    return a[np.isfinite(a)]


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` independent test items."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else math.nan


def _mean_se(samples: Sequence[float], noise: float | None) -> tuple[float, float, int]:
    """Mean, standard error and count of the finite ``samples``; the SE combines the spread over
    repetitions (sample std / √n) with each repetition's own measurement ``noise`` (an SE)."""
    a = _finite(samples)
    n = a.size
    if n == 0:
        return math.nan, math.nan, 0
    var = float(a.var(ddof=1)) / n if n > 1 else (0.0 if noise is not None else math.nan)
    if noise is not None and math.isfinite(noise):
        var += noise**2 / n
    return float(a.mean()), math.sqrt(var) if math.isfinite(var) else math.nan, n


def compare(
    a: Sequence[float],
    b: Sequence[float],
    *,
    lower: bool = True,
    names: tuple[str, str] = ("a", "b"),
    noise: tuple[float | None, float | None] = (None, None),
    chance: float | None = None,
    paired: bool = False,
) -> Verdict:
    """ "``a`` is lower than ``b``" (``lower=False``: higher) over repetitions ``a``, ``b``.

    Held when the difference of the means is beyond
    ``NOISE_SE`` standard errors in the
    claimed direction; not held when it is beyond them the other way; not judged when it is
    within them, when both sides are within them of ``chance``, or when one repetition per side
    without a measurement ``noise`` leaves the noise unknown. ``paired``: ``a[i]`` and ``b[i]``
    are two sides of one repetition (a pair of networks, one test set), and the noise is that
    of their differences.
    """
    ma, sa, na = _mean_se(a, noise[0])
    mb, sb, nb = _mean_se(b, noise[1])
    word = "lower" if lower else "higher"
    rule = (f"{names[0]} {word} than {names[1]}: the difference of the means beyond "
            f"{NOISE_SE:g} standard errors (spread over repetitions and measurement noise); "
            "within them, or both sides within them of chance: not judged")  # fmt: skip
    se = math.hypot(sa, sb)
    if paired and na == nb and na > 1:
        pairs = [
            x - y
            for x, y in zip(a, b, strict=True)
            if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
        ]
        noise_d = math.hypot(noise[0] or 0.0, noise[1] or 0.0) if any(
            v is not None for v in noise) else None  # fmt: skip
        se = _mean_se(pairs, noise_d)[1]
        rule = rule.replace("the difference of the means", "the mean paired difference")
    ev = {f"{names[0]}_mean": ma, f"{names[1]}_mean": mb, "difference": ma - mb,
          "standard_error": se, "repetitions": [na, nb]}  # fmt: skip
    if na == 0 or nb == 0:
        return Verdict(None, rule, ev, "a side has no finite value (diverged or missing)")
    if not math.isfinite(se):
        return Verdict(None, rule, ev, "one repetition per side: the noise is unknown")
    if chance is not None:
        ev["chance"] = chance
        if abs(ma - chance) <= NOISE_SE * sa and abs(mb - chance) <= NOISE_SE * sb:
            return Verdict(None, rule, ev, "both sides are at chance (within noise of it)")
    diff = (ma - mb) if lower else (mb - ma)
    if abs(ma - mb) <= NOISE_SE * se:
        return Verdict(None, rule, ev, f"the difference is within {NOISE_SE:g} standard errors")
    return Verdict(diff < 0, rule, ev)


def at_every(
    values: Sequence[Any],
    a_rows: Sequence[Sequence[float]],
    b_rows: Sequence[Sequence[float]],
    *,
    lower: bool = True,
    names: tuple[str, str] = ("a", "b"),
    noise: tuple[float | None, float | None] = (None, None),
    chance: float | None = None,
) -> Verdict:
    """[`compare`][hyperlab.experiments.claims.compare] at every swept value: held if it holds at
    each, not held if it fails at
    one, else not judged (naming the values that were within noise)."""
    outs = [compare(ra, rb, lower=lower, names=names, noise=noise, chance=chance)
            for ra, rb in zip(a_rows, b_rows, strict=True)]  # fmt: skip
    ev = {"values": list(values), "held_at": [o.held for o in outs],
          f"{names[0]}_means": [o.evidence[f"{names[0]}_mean"] for o in outs],
          f"{names[1]}_means": [o.evidence[f"{names[1]}_mean"] for o in outs],
          "standard_errors": [o.evidence["standard_error"] for o in outs]}  # fmt: skip
    rule = f"at every swept value: {outs[0].rule}" if outs else "no swept value"
    if not outs:
        return Verdict(None, rule, ev, "no swept value")
    if any(o.held is False for o in outs):
        return Verdict(False, rule, ev)
    if all(o.held for o in outs):
        return Verdict(True, rule, ev)
    open_ = [v for v, o in zip(values, outs, strict=True) if o.held is None]
    reasons = sorted({str(o.reason) for o in outs if o.held is None})
    return Verdict(None, rule, ev, f"not judged at {open_}: {'; '.join(reasons)}")


def monotone(
    values: Sequence[Any],
    rows: Sequence[Sequence[float]],
    *,
    decreasing: bool = True,
    name: str = "the score",
    noise: float | None = None,
) -> Verdict:
    """ "``name`` improves (falls, or rises with ``decreasing=False``) as the swept value grows",
    judged over every swept value: held when the largest value's score is beyond the noise
    better than the smallest's and no step between neighbours goes the other way beyond the
    noise; not held when the ends or a step go the other way beyond it; else not judged."""
    word = "falls" if decreasing else "rises"
    rule = (f"{name} {word} over every swept value: the last value beyond {NOISE_SE:g} standard "
            "errors past the first, and no step between neighbours back beyond them "
            "(Spearman's rho of the means recorded)")  # fmt: skip
    means = [_mean_se(r, noise)[0] for r in rows]
    ev: dict[str, Any] = {"values": list(values), "means": means}
    if len(rows) < 2:
        return Verdict(None, rule, ev, "a trend needs two swept values")
    ends = compare(rows[-1], rows[0], lower=decreasing, names=("last", "first"),
                   noise=(noise, noise))  # fmt: skip
    steps = [compare(rows[i + 1], rows[i], lower=decreasing, names=("next", "this"),
                     noise=(noise, noise)) for i in range(len(rows) - 1)]  # fmt: skip
    ev.update(ends_difference=ends.evidence["difference"],
              ends_standard_error=ends.evidence["standard_error"],
              steps_against=[values[i + 1] for i, s in enumerate(steps) if s.held is False],
              spearman_rho=_spearman(list(range(len(means))), means))  # fmt: skip
    if ends.held is False or ev["steps_against"]:
        return Verdict(False, rule, ev)
    if ends.held:
        return Verdict(True, rule, ev)
    return Verdict(None, rule, ev, f"first vs last swept value: {ends.reason}")


def no_improvement(
    values: Sequence[Any],
    rows: Sequence[Sequence[float]],
    *,
    trained: Sequence[bool],
    decreasing: bool = True,
    name: str = "the score",
    noise: float | None = None,
    trained_rule: str = "trained",
) -> Verdict:
    """ "``name`` does not improve as the swept value grows": only for a model that trained at
    every swept value (``trained``, by ``trained_rule``; else not judged: flat and broken look
    alike); held when no larger value is beyond the noise better than the smallest, not held
    when one is."""
    rule = (f"{name} does not improve: the model trained at every swept value "
            f"({trained_rule}), and no larger value beyond {NOISE_SE:g} standard errors better "
            "than the smallest")  # fmt: skip
    ev: dict[str, Any] = {"values": list(values), "means": [_mean_se(r, noise)[0] for r in rows],
                          "trained": list(trained)}  # fmt: skip
    if len(rows) < 2:
        return Verdict(None, rule, ev, "a trend needs two swept values")
    if not all(trained):
        failed = [v for v, t in zip(values, trained, strict=True) if not t]
        return Verdict(None, rule, ev, f"the model did not train ({trained_rule}) at {failed}")
    outs = [compare(rows[i], rows[0], lower=decreasing, names=("larger", "smallest"),
                    noise=(noise, noise)) for i in range(1, len(rows))]  # fmt: skip
    if any(o.evidence["repetitions"][0] < 2 and noise is None for o in outs):
        return Verdict(None, rule, ev, "one repetition per value: the noise is unknown")
    better = [values[i + 1] for i, o in enumerate(outs) if o.held]
    ev["better_than_smallest_at"] = better
    return Verdict(not better, rule, ev)


def at_least(value: float, threshold: float, *, name: str = "the value", se: float = 0.0,
             source: str = "") -> Verdict:  # fmt: skip
    """ "``name`` reaches ``threshold``" (the paper's level, ``source``): held when it is at or
    above it, not held when below it by more than the noise, not judged in between."""
    rule = f"{name} >= {threshold:g}" + (f" ({source})" if source else "")
    ev = {"value": value, "threshold": threshold, "standard_error": se}
    if value is None or not math.isfinite(value):
        return Verdict(None, rule, ev, "no finite value")
    if value >= threshold:
        return Verdict(True, rule, ev)
    if threshold - value <= NOISE_SE * se:
        return Verdict(None, rule, ev, f"below the threshold within {NOISE_SE:g} standard errors")
    return Verdict(False, rule, ev)


def within(samples: Sequence[float], reference: float, spread: float, *, name: str = "the value",
           source: str = "") -> Verdict:  # fmt: skip
    """ "``name`` matches the paper's ``reference`` ± ``spread``" over repetitions ``samples``:
    held when the mean is within ``NOISE_SE`` × √(SE² +
    spread²) of it (our standard error
    and the paper's ± together: the paper's repetitions are rarely stated, so its ± stands for
    its mean's uncertainty), not held when beyond; not judged without two finite repetitions."""
    rule = (f"{name}: mean within {NOISE_SE:g} × sqrt(SE² + paper's ±²) of the paper's "
            f"{reference:g} ± {spread:g}" + (f" ({source})" if source else ""))  # fmt: skip
    mean, se, n = _mean_se(samples, None)
    ev = {"mean": mean, "standard_error": se, "repetitions": n, "paper": reference,
          "paper_spread": spread}  # fmt: skip
    if n < 2 or not math.isfinite(se):
        return Verdict(None, rule, ev, "fewer than two finite repetitions: the noise is unknown")
    tol = NOISE_SE * math.hypot(se, spread)
    ev["tolerance"] = tol
    return Verdict(abs(mean - reference) <= tol, rule, ev)


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    ya = np.array(y, dtype=float)
    ok = np.isfinite(ya)
    if ok.sum() < 2:
        return math.nan
    rx = np.argsort(np.argsort(np.array(x, dtype=float)[ok])).astype(float)
    ry = np.argsort(np.argsort(ya[ok])).astype(float)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def format_evidence(evidence: Mapping[str, Any]) -> str:
    """``key = value; ...`` with numbers at 4 significant digits."""
    return "; ".join(f"{k} = {_fmt(v)}" for k, v in evidence.items())
