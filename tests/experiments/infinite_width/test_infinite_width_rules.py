"""Each infinite-width experiment's judge, fed hand-made metrics: held, failed, not judged."""

from __future__ import annotations

from hyperlab.experiments import get_experiment


def verdicts(name: str, metrics: dict, **overrides) -> dict[str, object]:
    exp = get_experiment(name)
    return {c.claim: c.held for c in exp.judge(exp.config("full", overrides), metrics)}


def curve(final: float, first: float, epochs: int = 4) -> list[float]:
    """Accuracy per epoch: 1/12 at init, ``first`` after epoch 1, then up to ``final``."""
    step = (final - first) / max(epochs - 1, 1)
    return [1 / 12, *[first + step * i for i in range(epochs)]]


def dyn(acc: dict) -> dict:
    return {"accuracy": acc}


def test_fig2_width_and_depth():
    good = {"3": {"10": [curve(0.50, 0.30), curve(0.52, 0.31)],
                  "100": [curve(0.90, 0.70), curve(0.91, 0.71)]},
            "8": {"10": [curve(0.30, 0.20), curve(0.31, 0.21)],
                  "100": [curve(0.60, 0.40), curve(0.61, 0.41)]}}  # fmt: skip
    v = verdicts("infinite-width-dynamics", dyn(good), g_depths=[3, 8], g_widths=[10, 100])
    assert len(v) == 8 and all(v.values())
    # at chance everywhere: not judged, never "held"
    chance = {d: {w: [curve(0.084, 0.083), curve(0.083, 0.084)] for w in ("10", "100")}
              for d in ("3", "8")}  # fmt: skip
    v = verdicts("infinite-width-dynamics", dyn(chance), g_depths=[3, 8], g_widths=[10, 100])
    assert set(v.values()) == {None}
    # the narrow g wins: the width claims fail
    swapped = {d: {"10": w["100"], "100": w["10"]} for d, w in good.items()}
    v = verdicts("infinite-width-dynamics", dyn(swapped), g_depths=[3, 8], g_widths=[10, 100])
    assert [x for k, x in v.items() if "widest" in k] == [False] * 4


def test_fig1_kernel_convergence():
    base = {"relative_error_of_mean_curve_vs_analytic": [[0.5, 0.5], [0.5, 0.1]],
            "relative_error_of_median_curve_vs_analytic": [[0.5, 0.5], [0.5, 0.1]],
            "draws": 100}  # fmt: skip
    ok = verdicts("infinite-width-kernel-convergence",
                  base | {"variance_of_probe_entry": [[50.0, 40.0], [30.0, 1.0]]})  # fmt: skip
    assert all(ok.values())
    close = verdicts("infinite-width-kernel-convergence",
                     base | {"variance_of_probe_entry": [[50.0, 1.1], [30.0, 1.0]]})  # fmt: skip
    assert [v for k, v in close.items() if "narrow f" in k] == [None]  # within noise
    few = verdicts(
        "infinite-width-kernel-convergence",
        base | {"variance_of_probe_entry": [[50.0, 1.5], [30.0, 1.0]], "draws": 5},
    )
    assert [v for k, v in few.items() if "narrow f" in k] == [None]  # 5 draws: wider noise
    far = verdicts(
        "infinite-width-kernel-convergence",
        base
        | {
            "relative_error_of_mean_curve_vs_analytic": [[0.5, 0.5], [0.5, 0.4]],
            "variance_of_probe_entry": [[50.0, 40.0], [30.0, 1.0]],
        },
    )
    assert [v for k, v in far.items() if "matches" in k] == [False]


def test_thm1_taylor_terms_and_the_vacuous_case():
    stats = {"1": {"1": {"slope": 0.05, "predicted": 0, "interval_95": [-0.1, 0.2],
                         "slope_of_median": 0.0},
                   "2": {"slope": -0.5, "predicted": -1, "interval_95": [-0.7, -0.3],
                         "slope_of_median": -0.5},
                   "4": {"slope": None, "predicted": -3, "identically_zero": True}}}  # fmt: skip
    v = verdicts("infinite-width-taylor-terms", {"statistics": stats, "fit_widths": [256]})
    assert v == {"H=1, r=1: K^(r) ~ n^0": True, "H=1, r=2: K^(r) ~ n^-1": False,
                 "H=1, r=4: K^(r) ~ n^-3": None}  # fmt: skip


def test_table1_representation():
    ns = [50, 100]
    tab = {"hyperkernel_mse": [0.06, 0.05], "nngp_mse": [0.05, 0.04],
           "hypernetwork_mse_runs": [[0.08, 0.081, 0.079], [0.06, 0.061, 0.059]]}  # fmt: skip
    m = {"ns": ns, "mse": {"s_weighted": {"representation": {"HK": [0.06, 0.05],
                                                              "NNGP": [0.05, 0.04]}}},
         "representation": tab}  # fmt: skip
    v = verdicts("infinite-width-representation", m, tasks=["representation"],
                 variants=["s_weighted"], ns=ns)  # fmt: skip
    assert all(v.values()) and len(v) == 5
    tab2 = tab | {"hypernetwork_mse_runs": [[0.05, 0.07, 0.03], [0.03, 0.05, 0.01]]}
    v = verdicts("infinite-width-representation", m | {"representation": tab2},
                 tasks=["representation"], variants=["s_weighted"], ns=ns)  # fmt: skip
    assert [x for k, x in v.items() if "HN" in k] == [None, None, None]  # within the runs' noise
    flipped = {"s_weighted": {"representation": {"HK": [0.05, 0.06], "NNGP": [0.06, 0.04]}}}
    v = verdicts("infinite-width-representation", m | {"mse": flipped},
                 tasks=["representation"], variants=["s_weighted"], ns=ns)  # fmt: skip
    assert [x for k, x in v.items() if "(s_weighted)" in k and "HN" not in k] == [False, False]
