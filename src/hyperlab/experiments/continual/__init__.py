"""Experiments of "Continual learning with hypernetworks" (von Oswald, Henning, Grewe,
Sacramento, ICLR 2020, arXiv:1906.00695), with the released code's set-ups (chrhenning/hypercl).

- `.split_mnist`: SplitMNIST, 5 tasks of two digits; CL1 (task given) and CL3 (task
  inferred by entropy, HNET+ENT) from one training.
- `.permuted_mnist`: PermutedMNIST-10, and the paper's small-capacity variant.

`.common` holds the config, the run over seeds and learners (HNET, fine-tuning, EWC on the
same target), the claims and the accuracy-matrix figure; the method is
[`hyperlab.continual`][hyperlab.continual].
"""
