"""The generating experiments' judges, fed hand-made metrics: held, failed, not judged; the
PCA null and the MNF comparison."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hyperlab.experiments import get_experiment
from hyperlab.experiments.config import ConfigError
from hyperlab.generative.analysis import isotropic_pc1_share, pca


def stats(acc=0.984, ens=0.990, single_fgsm=0.65, ens_fgsm=0.45, direct=0.89, inter=0.97,
          pc1=0.077, disagreement=0.015, filt=0.35):  # fmt: skip
    return {
        "accuracy_mean": acc, "accuracy_std": 0.002, "n_networks": 400,
        "share_at_least_97_5": 0.99, "ensemble_accuracy": ens, "ensemble_size": 200,
        "fgsm": {"single": [single_fgsm] * 5, "ensemble": [ens_fgsm] * 5, "n_images": 1000},
        "path_direct_accuracy": [[0.98, direct, 0.98]] * 5,
        "path_interpolated_accuracy": [[0.98, inter, 0.98]] * 5,
        "pca_explained_variance_ratio_all": [pc1, 0.03],
        "prediction_disagreement": disagreement, "conv0_filter_diversity_min": filt,
    }  # fmt: skip


def verdicts(name: str, metrics: dict, **overrides) -> dict[str, object]:
    exp = get_experiment(name)
    return {c.claim: c.held for c in exp.judge(exp.config("full", overrides), metrics)}


def test_generating_mnist_with_mnf_in_the_run():
    m = {"analyses": stats(), "mnf": stats(disagreement=0.009, filt=0.002)}
    v = verdicts("generating-mnist", m)
    assert len(v) == 7
    pca = next(k for k in v if "manifold" in k)
    # without the MNF's PCA (an MNF trained in the run has none): the PCA claim is not judged
    assert v[pca] is None and all(x for k, x in v.items() if k != pca)


def test_generating_mnist_fails_below_the_papers_level():
    v = verdicts("generating-mnist", {"analyses": stats(acc=0.95)})
    assert v["generated networks are accurate (mean test accuracy >= 97.5%)"] is False
    v = verdicts("generating-mnist", {"analyses": stats(acc=0.95)}, accuracy_claim_threshold=0.9)
    assert v["generated networks are accurate (mean test accuracy >= 90.0%)"] is True
    v = verdicts("generating-mnist", {"analyses": stats(direct=0.971, inter=0.970)})
    path = next(k for k in v if "direct path" in k)
    assert v[path] is None  # 0.1 points apart on 10k images: within noise
    v = verdicts("generating-mnist", {"analyses": stats(direct=0.99, inter=0.97)})
    assert v[path] is False
    no_mnf = verdicts("generating-mnist", {"analyses": stats()})
    assert [x for k, x in no_mnf.items() if "MNF" in k] == [None, None]


def test_generating_mnist_against_a_recorded_mnf_baseline(tmp_path):
    mnf = {
        "experiment": "generating-mnf-baseline",
        "config": {"n_pca": 1000},
        "metrics": {"analyses": stats(pc1=0.008, disagreement=0.009, filt=0.002)},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(mnf))
    v = verdicts("generating-mnist", {"analyses": stats()}, mnf_results=str(path))
    assert all(v.values()) and len(v) == 7
    # an MNF with more structure over its null than the generator: the PCA claim fails
    mnf["metrics"]["analyses"]["pca_explained_variance_ratio_all"] = [0.5, 0.1]
    path.write_text(json.dumps(mnf))
    v = verdicts("generating-mnist", {"analyses": stats()}, mnf_results=str(path))
    assert next(x for k, x in v.items() if "manifold" in k) is False
    path.write_text(json.dumps({"experiment": "generating-mnist"}))
    with pytest.raises(ConfigError, match="mnf_results"):
        verdicts("generating-mnist", {"analyses": stats()}, mnf_results=str(path))


def test_mnf_baseline():
    v = verdicts("generating-mnf-baseline", {"analyses": stats(direct=0.98, inter=0.981)})
    assert list(v.values()) == [True, True, True]
    v = verdicts("generating-mnf-baseline", {"analyses": stats(direct=0.90, inter=0.98,
                                                               ens_fgsm=0.66)})  # fmt: skip
    assert list(v.values()) == [True, False, None]


def test_toy_gmm():
    m = {"components_visited": 10, "n_components": 10, "score_averaged_over_z": 0.3,
         "score_averaged_over_arc_length": 0.2}  # fmt: skip
    assert all(verdicts("generating-toy-gmm", m).values())
    assert not any(
        verdicts(
            "generating-toy-gmm", m | {"components_visited": 9, "score_averaged_over_z": 0.1}
        ).values()
    )


@pytest.mark.parametrize("n, d", [(300, 2000), (200, 50)])
def test_the_isotropic_null_matches_simulated_noise(n, d):
    g = torch.Generator().manual_seed(0)
    shares = [float(pca(torch.randn(n, d, generator=g), 1)[1][0]) for _ in range(3)]
    assert np.mean(shares) == pytest.approx(isotropic_pc1_share(n, d), rel=0.1)


def test_disagreement_against_mnf_is_judged_beyond_the_binomial_noise():
    from hyperlab.experiments.generating.mnist import mnf_claims

    mnf = {"conv0_filter_diversity_min": 0.009, "prediction_disagreement": 0.0146}
    ours = {"conv0_filter_diversity_min": 0.45, "prediction_disagreement": 0.0153}
    close = mnf_claims(ours, mnf, "record", n_test=10_000)[1]
    assert close.held is None and "within" in close.not_judged  # 0.0007 apart: noise
    lower = mnf_claims(ours | {"prediction_disagreement": 0.0086}, mnf, "record", 10_000)[1]
    assert lower.held is False
    higher = mnf_claims(ours | {"prediction_disagreement": 0.03}, mnf, "record", 10_000)[1]
    assert higher.held is True and higher.evidence["test_images"] == 10_000
