"""Kozachenko–Leonenko estimators against closed-form entropies (App. A.5)."""

import math

import pytest
import torch

from hyperlab.generative.entropy import (
    _distance_matrix,
    authors_entropy,
    kl_entropy,
    log_unit_ball_volume,
    nn_distances,
)


def gaussian_entropy(d: int, std: float = 1.0) -> float:
    return 0.5 * d * (1.0 + math.log(2 * math.pi)) + d * math.log(std)


def uniform_entropy(d: int, width: float) -> float:
    return d * math.log(width)


def mean_abs_error(sampler, true: float, n: int, reps: int, **kw) -> float:
    errs = [abs(kl_entropy(sampler(n), **kw).item() - true) for _ in range(reps)]
    return sum(errs) / len(errs)


@pytest.mark.parametrize("metric", ["l2", "l1", "linf"])
@pytest.mark.parametrize("d", [1, 3])
def test_gaussian_close_and_consistent(metric, d):
    torch.manual_seed(0)
    true = gaussian_entropy(d, 2.0)

    def sampler(n):
        return 2.0 * torch.randn(n, d, dtype=torch.float64)

    small = mean_abs_error(sampler, true, 64, 20, metric=metric)
    large = mean_abs_error(sampler, true, 2048, 4, metric=metric)
    assert large < small
    assert large < 0.05 * d + 0.03


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_uniform_close_and_consistent(metric):
    torch.manual_seed(1)
    d, width = 2, 3.0
    true = uniform_entropy(d, width)

    def sampler(n):
        return width * torch.rand(n, d, dtype=torch.float64)

    small = mean_abs_error(sampler, true, 64, 20, metric=metric)
    large = mean_abs_error(sampler, true, 2048, 4, metric=metric)
    assert large < small
    assert large < 0.08


def test_higher_dimension_gaussian():
    torch.manual_seed(2)
    d = 8
    est = kl_entropy(torch.randn(8192, d, dtype=torch.float64)).item()
    assert est == pytest.approx(gaussian_entropy(d), abs=0.35)


def test_kth_neighbour_is_also_consistent():
    torch.manual_seed(3)
    est = kl_entropy(torch.randn(4096, 2, dtype=torch.float64), k=3).item()
    assert est == pytest.approx(gaussian_entropy(2), abs=0.06)


def test_unit_ball_volumes():
    assert math.exp(log_unit_ball_volume(2, "l2")) == pytest.approx(math.pi)
    assert math.exp(log_unit_ball_volume(3, "l2")) == pytest.approx(4 / 3 * math.pi)
    assert math.exp(log_unit_ball_volume(2, "l1")) == pytest.approx(2.0)
    assert math.exp(log_unit_ball_volume(3, "linf")) == pytest.approx(8.0)


def test_nn_distances_brute_force():
    torch.manual_seed(4)
    x = torch.randn(10, 5, dtype=torch.float64)
    d = nn_distances(x, "l1")
    brute = [min((x[i] - x[j]).abs().sum().item() for j in range(10) if j != i) for i in range(10)]
    assert torch.allclose(d, torch.tensor(brute, dtype=torch.float64))


def test_authors_form_differs_by_constant_only():
    torch.manual_seed(5)
    x = torch.randn(32, 50, dtype=torch.float64)
    a = authors_entropy(x, noise_dim=7, eps=0.0)
    b = kl_entropy(x, dim=7, metric="l1")
    psi1 = torch.special.digamma(torch.tensor(1.0, dtype=torch.float64)).item()
    const = -psi1 + log_unit_ball_volume(7, "l1")
    assert (b - a).item() == pytest.approx(const, abs=1e-9)


def test_differentiable_and_finite_with_duplicates():
    x = torch.randn(16, 20, dtype=torch.float64)
    x = torch.cat([x, x[:2]]).requires_grad_()
    for h in (authors_entropy(x, 3), kl_entropy(x, eps=1e-8)):
        (g,) = torch.autograd.grad(h, x)
        assert torch.isfinite(g).all()
    # spreading the samples out increases the entropy: gradient ascent direction
    y = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    h = kl_entropy(y)
    (g,) = torch.autograd.grad(h, y)
    assert kl_entropy(y + 1e-3 * g).item() > h.item()


@pytest.mark.parametrize("metric", ["l1", "l2", "linf"])
def test_nn_distances_match_differentiating_cdist(metric):
    """Only the chosen pairs carry autograd: the same values and gradients as the full
    cdist → mask → topk graph."""
    torch.manual_seed(5)
    x = torch.randn(12, 30, dtype=torch.float64, requires_grad=True)
    w = torch.rand(12, dtype=torch.float64)
    p = {"l1": 1.0, "l2": 2.0, "linf": math.inf}[metric]
    for k in (1, 3):
        d = torch.cdist(x, x, p=p, compute_mode="donot_use_mm_for_euclid_dist")
        d = d.masked_fill(torch.eye(12, dtype=torch.bool), math.inf)
        ref = d.topk(k, dim=1, largest=False).values[:, k - 1]
        (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
        got = nn_distances(x, metric, k)
        (g,) = torch.autograd.grad((got * w).sum(), x)
        torch.testing.assert_close(got, ref)
        torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("metric", ["l1", "l2", "linf"])
def test_distance_matrix_is_float64_close(metric):
    """At the generating step's size (32 networks x 20,018 weights, near one another) the
    float32 matrix the neighbours are chosen on is symmetric with a zero diagonal, within
    2e-6 relative of float64 (float32 cdist, used before, fails this for L1 and L2), and picks
    float64's neighbours."""
    torch.manual_seed(6)
    x = (torch.randn(1, 20_018) + 0.05 * torch.randn(32, 20_018)).double()
    p = {"l1": 1.0, "l2": 2.0, "linf": math.inf}[metric]
    ref = torch.cdist(x, x, p=p, compute_mode="donot_use_mm_for_euclid_dist")
    d = _distance_matrix(x.float(), p)
    assert torch.equal(d, d.T) and not d.diagonal().any()
    torch.testing.assert_close(d.double(), ref, rtol=2e-6, atol=0.0)
    eye = torch.eye(32, dtype=torch.bool)
    nearest, ref_nearest = (m.masked_fill(eye, math.inf).argmin(1) for m in (d, ref))
    assert torch.equal(nearest, ref_nearest)


def test_errors_name_argument():
    with pytest.raises(ValueError, match="samples"):
        kl_entropy(torch.randn(1, 3))
    with pytest.raises(ValueError, match="metric"):
        kl_entropy(torch.randn(5, 3), metric="cosine")
    with pytest.raises(ValueError, match="noise_dim"):
        authors_entropy(torch.randn(5, 3), noise_dim=0)
    with pytest.raises(ValueError, match="samples"):
        kl_entropy(torch.tensor([[0.0], [float("nan")]]))
