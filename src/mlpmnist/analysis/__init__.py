"""The analysis stage: statistics of seed outcomes (numbers only), their tables, and findings
in words. Nothing here imports torch."""
