"""Beyond the reference: a fair batch-size study on the same MLP, every run an experiment in the
store (so an interrupted run resumes and a repeat trains nothing).

The reference study holds lr = 0.1 while it changes the batch size, so its curves mix the batch
size with the step size. Here each batch size gets its own learning rate, chosen on a validation
split by each of two disjoint seed sets on its own, and the literature's measures follow:

- ``tuning``: the tuned lr per batch size, its grid grown until the best has neighbours;
  ``scaling``: how it scales (a power law and a saturating form), and steps to target's fit;
- ``steps``: steps to validation targets at each batch size's fastest lr;
- ``ceiling`` (with ``hessian``): each seed's collapse lr beside its λ_max at initialisation,
  with a centred-input control, and λ_max during the first epoch;
- ``noise``: the gradient noise scale B_simple;
- ``recipe``: a tuned recipe for the unchanged MLP;
- ``tail``: a causal test of batch 8's tail (leaky ReLU; the tuned lr);
- ``intervals``: intervals over seeds, the second set beside the first;
- ``runs`` (how everything trains: through the sweep and the store), ``presets``, ``sections``
  (the notebook's sections, one call each) and ``summary`` (the record the README quotes).

Accuracies are fractions in [0, 1], losses mean cross-entropy in nats, times in seconds.
"""
