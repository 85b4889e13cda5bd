"""A fair batch-size study: tuned learning rates, steps to target, noise scale, a tuned recipe.

The reference study holds lr = 0.1 fixed while it changes the batch size, so its curves mix
the batch size with the step size lr / B. The studies here give each batch size its own
learning rate, chosen on a validation split (the last ``holdout`` training images), and then
measure what the literature measures. Each module is one study; every one trains through
``mlpmnist.train`` (its evaluation schedule, stop rule and transform hooks), so the engine,
dtype, divergence handling and history columns are those of every other run.

- ``lr_tuning``: ``lr_grid``, ``tune_lr``, ``lr_summary``, ``best_lr``, ``lr_scaling``; the
  refined search ``lr_search_summary``, ``refine_lrs``, ``search_lr``, ``best_lr_interval``,
  ``collapse_lr`` (the best lr within a factor sqrt 2, and where runs start to fail).
- ``steps``: ``eval_steps``, ``TargetRace`` / ``lost_race`` (the stop rule),
  ``candidate_lrs``, ``train_to_target``, ``steps_to_target``, ``first_reaching``,
  ``steps_table``, ``Scaling`` / ``scaling_regimes`` (S(B) = S_min (1 + B_crit / B)).
- ``noise``: the gradient noise scale B_simple (McCandlish et al. 2018).
- ``hessian``: lambda_max, the top Hessian eigenvalue of the training loss, by power iteration
  on Hessian-vector products (``hvp``, ``mlp_hvp``, ``top_eigenvalue``, ``lambda_max``,
  ``lambda_max_table``, ``lambda_max_during_training``, ``sharpness_summary``); 2 / lambda_max
  is the largest stable step of full-batch gradient descent.
- ``intervals``: 95% intervals over seeds: ``seed_bootstrap`` / ``seed_bootstrap_many`` (a
  cluster bootstrap, whole seeds resampled), ``proportion_interval`` / ``tail_rate`` (binomial),
  the headline statistics (``lr_slope``, ``b_crit``, ``s_min``, ``steps_intervals``,
  ``mean_accuracy``, ``b_simple_at_target``) and ``headline_intervals``.
- ``recipe``: ``Recipe`` (a ``TrainConfig`` without seeds), ``REFERENCE_RECIPE``,
  ``train_tuned``, ``run_recipes``, ``select_recipe``.
- ``presets``: ``FULL`` and ``QUICK``, ``preset``; ``summary``: ``summary_record``,
  ``Stopwatch``. Each study's ``*_report`` gives the numbers behind its claims as text.

The figures are in ``mlpmnist.figures.science`` (``mlpmnist.figures.registry`` names them).
Every run here takes only full batches (``drop_last``): n // B steps an epoch, each of exactly B
examples; the reference study keeps the remainder as a smaller last batch, like the original
DataLoader. Accuracies are fractions in [0, 1], losses mean cross-entropy in nats, times in
seconds.
"""

from mlpmnist.science.ceiling import (
    Ceiling,
    ceiling_report,
    ceiling_table,
    control_table,
    init_sharpness,
    measure_ceiling,
)
from mlpmnist.science.common import (
    BATCH_SIZES,
    HOLDOUT,
    REFERENCE_LR,
    SCIENCE_DEFAULTS,
    final_rows,
    grid_config,
    science_config,
)
from mlpmnist.science.hessian import (
    SHARPNESS_COLUMNS,
    EigenResult,
    hvp,
    lambda_max,
    lambda_max_during_training,
    lambda_max_table,
    mlp_hvp,
    sharpness_summary,
    top_eigenvalue,
)
from mlpmnist.science.intervals import (
    Interval,
    Proportion,
    b_crit,
    b_simple_at_target,
    headline_intervals,
    headlines_report,
    lr_slope,
    mean_accuracy,
    of_seeds,
    proportion_interval,
    s_min,
    second_values,
    seed_bootstrap,
    seed_bootstrap_many,
    steps_intervals,
    steps_per_batch,
    steps_second,
    steps_with_intervals,
    tail_rate,
    two_runs,
)
from mlpmnist.science.lr_tuning import (
    LR_BOUNDS,
    best_lr,
    best_lr_interval,
    collapse_lr,
    lr_grid,
    lr_report,
    lr_scaling,
    lr_search_summary,
    lr_summary,
    refine_lrs,
    search_lr,
    tune_lr,
)
from mlpmnist.science.noise import (
    NOISE_COLUMNS,
    NoiseScale,
    estimate_noise_scale,
    exact_noise_scale,
    mlp_chunk_grads,
    noise_at_target,
    noise_report,
    noise_scale_during_training,
    noise_scale_from_norms,
)
from mlpmnist.science.outputs import Outputs, concurrency
from mlpmnist.science.presets import COARSE_LRS, FULL, QUICK, Preset, preset
from mlpmnist.science.recipe import (
    REFERENCE_RECIPE,
    Recipe,
    RecipeRun,
    run_recipe,
    run_recipes,
    select_recipe,
    train_tuned,
    tuned_report,
)
from mlpmnist.science.steps import (
    Scaling,
    TargetRace,
    candidate_lrs,
    eval_steps,
    first_reaching,
    lost_race,
    scaling_regimes,
    steps_report,
    steps_table,
    steps_to_target,
    target_run,
    train_to_target,
    try_scaling_regimes,
)
from mlpmnist.science.summary import Stopwatch, headline, summary_record, write_summary

__all__ = [
    "Ceiling",
    "measure_ceiling",
    "BATCH_SIZES",
    "FULL",
    "HOLDOUT",
    "LR_BOUNDS",
    "NOISE_COLUMNS",
    "QUICK",
    "REFERENCE_LR",
    "REFERENCE_RECIPE",
    "SCIENCE_DEFAULTS",
    "SHARPNESS_COLUMNS",
    "EigenResult",
    "Interval",
    "NoiseScale",
    "Preset",
    "Proportion",
    "Recipe",
    "RecipeRun",
    "Scaling",
    "Stopwatch",
    "TargetRace",
    "b_crit",
    "b_simple_at_target",
    "best_lr",
    "best_lr_interval",
    "candidate_lrs",
    "collapse_lr",
    "estimate_noise_scale",
    "eval_steps",
    "exact_noise_scale",
    "final_rows",
    "first_reaching",
    "grid_config",
    "headline",
    "headline_intervals",
    "hvp",
    "lambda_max",
    "lambda_max_during_training",
    "lambda_max_table",
    "lost_race",
    "lr_grid",
    "lr_report",
    "lr_scaling",
    "lr_search_summary",
    "lr_slope",
    "lr_summary",
    "mean_accuracy",
    "mlp_chunk_grads",
    "mlp_hvp",
    "noise_at_target",
    "noise_report",
    "noise_scale_during_training",
    "noise_scale_from_norms",
    "preset",
    "proportion_interval",
    "refine_lrs",
    "run_recipe",
    "run_recipes",
    "s_min",
    "scaling_regimes",
    "science_config",
    "search_lr",
    "seed_bootstrap",
    "seed_bootstrap_many",
    "select_recipe",
    "sharpness_summary",
    "steps_intervals",
    "steps_per_batch",
    "steps_report",
    "steps_table",
    "steps_to_target",
    "summary_record",
    "tail_rate",
    "top_eigenvalue",
    "train_to_target",
    "train_tuned",
    "try_scaling_regimes",
    "tune_lr",
    "tuned_report",
    "write_summary",
    "ceiling_report",
    "ceiling_table",
    "control_table",
    "init_sharpness",
    "Outputs",
    "concurrency",
    "COARSE_LRS",
    "headlines_report",
    "of_seeds",
    "second_values",
    "steps_second",
    "steps_with_intervals",
    "two_runs",
    "target_run",
]
