"""Experiments of "Generating Neural Networks with Neural Networks" (Deutsch 2018, 1801.01952).

- `.toy_gmm` (Sec. 4.1, Fig. 1): 1-d noise generates 2-d points that should score high on
  a Gaussian mixture while staying diverse.
- `.mnist` (Sec. 4.2, Figs. 2-9): a generator of all 20,018 weights of the MNIST target
  network (App. A.6) trained on λ · CE − Ĥ(gauge-fixed weights).
- `.mnf_baseline`: multiplicative normalizing flows (Louizos & Welling 2017) on the same
  target, through the same analyses.

`.analyses` holds what both MNIST experiments report (accuracy histograms, majority-vote
ensembles, diversity, FGSM, PCA, paths, filters). Settings follow the released code (notes
C.2-C.8) unless a config says otherwise.
"""
