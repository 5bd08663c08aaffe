"""Experiments of "On Infinite-Width Hypernetworks" (Littwin, Galanti, Wolf, Yang, NeurIPS 2020).

One module per figure or table:

- `.kernel_convergence` (Fig. 1): the empirical hyperkernel converges to the analytic Θ^h
  only when both f and g are wide.
- `.taylor_terms` (Thm 1): K^(r) ~ n^{H-r} for r > H, ~1 otherwise (n: f's width, H: g's
  depth), measured by nested directional derivatives.
- `.dynamics` (Fig. 2): test accuracy over training of rotation-prediction hypernetworks
  with a fixed wide f, for several widths and depths of g.
- `.representation` (Table 1): MNIST image representation and inpainting by kernel
  regression (Eq. 18) with the hyperkernel and the hypernetwork NNGP, against a trained
  hypernetwork (`.representation_hn`, the "HN" row).

Notation follows the paper: u = (x, z), x is f's input, z is g's input.
"""
