"""convbench: reproducible CNN benchmarks as a Kedro project tracked with MLflow."""

__version__ = "0.1.0"
