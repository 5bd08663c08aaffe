"""Figures say what was measured: sparse sweeps as points, single seeds without error bars."""

from __future__ import annotations

import math

from hyperlab.plots import dense_sweep, errorbar_curves, plt


def test_lines_join_only_dense_sweeps():
    assert dense_sweep([2, 3, 4, 5])
    assert not dense_sweep([2, 5, 7])  # the demo's depths: points only
    assert not dense_sweep([1e-3, 1e-2])
    assert dense_sweep([1e-4 * 10 ** (j / 4) for j in range(2, 10)])  # an even log grid
    assert dense_sweep([10, 20, 30, 40])
    assert not dense_sweep([3])


def test_one_seed_has_no_error_bars_and_sparse_values_no_line():
    fig = errorbar_curves([2, 5, 7], {"hypernetwork": [[0.1], [0.05], [0.04]]}, xlabel="k",
                          ylabel="mse", title="t")  # fmt: skip
    legend = fig.axes[0].get_legend()
    assert legend.get_title().get_text() == "one seed (no error bars)"
    line = fig.axes[0].containers[0].lines[0]  # the errorbar's data line
    assert line.get_linestyle() == "None" and fig.axes[0].containers[0].has_yerr is False
    plt.close(fig)
    fig = errorbar_curves([2, 3, 4], {"hypernetwork": [[0.1, 0.2], [0.05, 0.06], [math.nan] * 2]},
                          xlabel="k", ylabel="mse", title="t")  # fmt: skip
    assert fig.axes[0].get_legend().get_title().get_text() == "mean ± 1 std over 2 seeds"
    line = fig.axes[0].containers[0].lines[0]
    assert line.get_linestyle() == "-" and fig.axes[0].containers[0].has_yerr
    plt.close(fig)
