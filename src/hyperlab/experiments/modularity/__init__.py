"""Experiments of "On the Modularity of Hypernetworks" (Galanti & Wolf, NeurIPS 2020).

Hypernetwork h(x, I) = g(x; f(I)) against the embedding method q(x, e(I)) at matched primary
sizes (Sec. 5). One module per figure:

- `.synthetic_depth` (Fig. 1a), `.synthetic_embedding_dim` (Fig. 1b), on the synthetic
  target of `.synthetic`;
- `.unique_approximator` (Fig. 2, Assumption 1);
- `.rotation` (Fig. 3), `.embedding_dim_images` (App. 1.2),
  `.colorization` (App. 1.3), `.lr_sensitivity` (App. 1.4), on the image tasks of
  `.images`.

The machinery they share: `.sweep` (one training run, the seed/value sweep with the optional
per-model learning-rate search) and `.summary` (the recurring claims and comparison rows).
"""
