"""Analyses of generated networks (Sec. 4.2): ensembles, diversity, FGSM, PCA, paths."""

import itertools

import pytest
import torch

from hyperlab import MLP, ConvNet
from hyperlab.generative import GenerativeHyperNetwork
from hyperlab.generative.analysis import (
    accuracies,
    disagreement_rate,
    ensemble_accuracies,
    fgsm_attack,
    filter_diversity,
    interpolation_paths,
    majority_vote,
    pairwise_distances,
    pca,
    predict_logits,
    slice_params,
    wrong_prediction_iou,
)


def small_convnet():
    return ConvNet((1, 12, 12), channels=(4, 3), hidden=(5,), out_features=10, kernel_size=3)


def test_predict_logits_matches_per_network_loop_and_chunks():
    torch.manual_seed(0)
    primary = small_convnet()
    params = primary.init_params((5,))
    x = torch.rand(7, 1, 12, 12)
    full = predict_logits(primary, params, x)
    tiny = predict_logits(primary, params, x, chunk=3)
    for i in range(5):
        ref = primary(x, slice_params(params, i))
        assert torch.allclose(full[i], ref, atol=1e-6)
        assert torch.allclose(tiny[i], ref, atol=1e-6)


def test_majority_vote_and_ensembles():
    preds = torch.tensor([[0, 1, 2], [0, 2, 2], [1, 1, 0]])
    assert majority_vote(preds, 3).tolist() == [0, 1, 2]
    labels = torch.tensor([0, 1, 2])
    logits = torch.nn.functional.one_hot(preds, 3).float()
    assert accuracies(logits, labels).tolist() == pytest.approx([1.0, 2 / 3, 1 / 3])
    assert ensemble_accuracies(logits, labels, 3).tolist() == [1.0]
    assert ensemble_accuracies(logits, labels, 1).tolist() == pytest.approx([1, 2 / 3, 1 / 3])
    assert ensemble_accuracies(logits, labels, 3, rule="mean_prob").tolist() == [1.0]
    with pytest.raises(ValueError, match="ensemble_size"):
        ensemble_accuracies(logits, labels, 4)


def test_disagreement_matches_pairwise_definition():
    torch.manual_seed(1)
    preds = torch.randint(0, 4, (6, 50))
    brute = (
        sum(
            (preds[i] != preds[j]).float().mean().item()
            for i, j in itertools.combinations(range(6), 2)
        )
        / 15
    )
    assert disagreement_rate(preds, 4) == pytest.approx(brute)
    assert disagreement_rate(preds[:1].expand(3, -1), 4) == 0.0


def test_wrong_prediction_iou_matches_sets():
    torch.manual_seed(2)
    preds, labels = torch.randint(0, 3, (5, 40)), torch.randint(0, 3, (40,))
    wrong = [set(torch.nonzero(p != labels).flatten().tolist()) for p in preds]
    brute = [len(a & b) / len(a | b) for a, b in itertools.combinations(wrong, 2)]
    assert wrong_prediction_iou(preds, labels) == pytest.approx(sum(brute) / len(brute))
    assert wrong_prediction_iou(preds[:1].expand(3, -1), labels) == 1.0
    with pytest.raises(ValueError, match="labels"):
        wrong_prediction_iou(preds, labels[:5])


def test_filter_diversity_per_filter():
    torch.manual_seed(3)
    w, b = torch.randn(6, 4, 2, 3, 3), torch.randn(6, 4)
    got = filter_diversity(w, b)
    flat = torch.cat([w.flatten(2), b.unsqueeze(-1)], -1).double()
    for f in range(4):  # mean squared distance to the filter's mean / its mean square
        x = flat[:, f]
        want = ((x - x.mean(0)) ** 2).sum(1).mean() / (x**2).sum(1).mean()
        assert got[f].item() == pytest.approx(want.item(), rel=1e-5)
    shared = w[:1].expand(6, -1, -1, -1, -1).clone()
    shared[:, 2] = torch.randn(6, 2, 3, 3)  # one filter varies, the others are shared
    d = filter_diversity(shared)
    assert d[[0, 1, 3]].abs().max().item() < 1e-6 and d[2].item() > 0.3
    assert filter_diversity(torch.cat([w[:3], -w[:3]])).min().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="bias"):
        filter_diversity(w, b[:, :2])
    with pytest.raises(ValueError, match="weight"):
        filter_diversity(w[:1])


def test_pairwise_distances_and_pca():
    torch.manual_seed(2)
    flat = torch.randn(5, 3)
    d = pairwise_distances(flat)
    assert d.shape == (10,)
    ref = torch.cdist(flat, flat)
    i, j = torch.triu_indices(5, 5, 1)
    torch.testing.assert_close(d, ref[i, j])
    with pytest.raises(ValueError, match="flat: expected"):
        pairwise_distances(flat[None])
    assert d[0].item() == pytest.approx((flat[0] - flat[1]).norm().item(), rel=1e-6)
    # points on a line: one component explains everything
    line = torch.linspace(-1, 1, 20)[:, None] * torch.tensor([[1.0, 2.0, -1.0]]) + 3.0
    scores, ratio = pca(line, 3)
    assert ratio[0].item() == pytest.approx(1.0, abs=1e-6)
    assert scores.shape == (20, 3)
    assert torch.allclose(scores[:, 0].abs(), (line - line.mean(0)).norm(dim=1), atol=1e-5)


def test_fgsm_on_linear_model_is_exact():
    """Softmax-linear classifier: the attack direction and cumulative rates are predictable."""
    torch.manual_seed(3)
    primary = MLP([4, 10], activation="relu")
    w = torch.randn(10, 4)
    attacked = {"fc0.weight": w, "fc0.bias": torch.zeros(10)}
    ensemble = {"fc0.weight": w.expand(3, -1, -1), "fc0.bias": torch.zeros(3, 10)}
    x = torch.randn(200, 4)
    y = primary(x, attacked).argmax(-1)
    y[:20] = (y[:20] + 1) % 10  # 20 misclassified images are skipped
    eps = [0.0, 0.5, 1.0, 2.0, 8.0]
    out = fgsm_attack(primary, attacked, ensemble, x, y, eps)
    assert int(out["n_images"]) == 180
    assert out["single"][0].item() == 0.0
    assert torch.all(out["single"][1:] >= out["single"][:-1])  # cumulative
    assert out["single"][-1].item() > 0.5
    # identical members: the ensemble is fooled exactly when the single network is
    assert torch.allclose(out["ensemble"], out["single"])


def test_fgsm_single_attack_on_convnet_increases_with_eps():
    torch.manual_seed(4)
    primary = small_convnet()
    nets = primary.init_params((4,))
    x = torch.rand(64, 1, 12, 12)
    y = primary(x, slice_params(nets, 0)).argmax(-1)
    out = fgsm_attack(
        primary, slice_params(nets, 0), slice_params(nets, slice(1, 4)), x, y, [0, 0.05, 0.3]
    )
    assert out["single"][0] == 0 and out["single"][-1] > 0
    assert set(out) >= {"single", "ensemble", "single_targeted", "ensemble_targeted"}


def test_interpolation_paths_endpoints_agree():
    torch.manual_seed(5)
    primary = small_convnet()
    gen = GenerativeHyperNetwork(primary, noise_dim=4, extractor_hidden=(8,)).eval()
    z = gen.sample_noise(2)
    x = torch.rand(30, 1, 12, 12)
    y = torch.randint(0, 10, (30,))
    res = interpolation_paths(gen, primary, z[0], z[1], x, y, n_points=5)
    assert res["interpolated"].shape == (5,) and res["direct"].shape == (5,)
    assert res["interpolated"][0] == res["direct"][0]
    assert res["interpolated"][-1] == res["direct"][-1]
