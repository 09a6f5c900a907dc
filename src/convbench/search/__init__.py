"""Hyperparameter search: search spaces (`space`) and shared, kill-safe Optuna studies (`study`)."""
