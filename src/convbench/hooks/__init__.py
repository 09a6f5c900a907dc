"""Kedro hooks, one module per job; `settings.py` lists them in the order Kedro calls them.

- `resolvers`: `${convbench.project_path:}` for the configuration;
- `preflight`: a run whose inputs are missing stops before its first node;
- `locks`: what a run holds alone and what it shares (`convbench.locking`);
- `mlflow_runs`: the experiment of each run, every node's time and status, KILLED runs;
- `checkpoints`: training checkpoints removed once a run has succeeded;
- `summary`: the run's log ends with its results.

`settings.py` imports them for every `kedro` command, so they import no pipeline, Keras or
TensorFlow (tests/test_config.py runs `kedro --help` to check).
"""
