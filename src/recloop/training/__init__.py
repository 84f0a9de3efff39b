"""Training: dataset building, model families, evaluation, experiment runs."""
