"""Project settings: hooks and configuration loading."""

from convbench.config import ConvbenchConfigLoader
from convbench.hooks import (
    CheckpointCleanupHook,
    DatasetLockHook,
    MlflowExperimentHook,
    MlflowNodeTrackingHook,
    MlflowRunLifecycleHook,
    PreflightHook,
    ProjectPathResolverHook,
    ResultSummaryHook,
)
from convbench.requirements import pip_requirements

HOOKS = (
    ProjectPathResolverHook(),
    DatasetLockHook(),
    PreflightHook(),
    MlflowExperimentHook(),
    MlflowNodeTrackingHook(),
    MlflowRunLifecycleHook(),
    CheckpointCleanupHook(),
    ResultSummaryHook(),
)

# OmegaConfigLoader whose parameters also hold the dataset specs' layers (convbench.config).
CONFIG_LOADER_CLASS = ConvbenchConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (smoke, local) override single values instead of whole top-level keys.
    "merge_strategy": {"parameters": "soft", "catalog": "soft", "mlflow": "soft"},
    # ${convbench.pip_requirements:} in catalog.yml: the logged models' requirements, pinned (no inference)
    "custom_resolvers": {"convbench.pip_requirements": pip_requirements},
}
