"""Project settings: hooks and configuration loading."""

from convbench.config import ConvbenchConfigLoader
from convbench.hooks.checkpoints import CheckpointCleanupHook
from convbench.hooks.locks import DatasetLockHook
from convbench.hooks.mlflow_runs import MlflowExperimentHook, MlflowNodeTrackingHook, MlflowRunLifecycleHook
from convbench.hooks.preflight import PreflightHook
from convbench.hooks.resolvers import ProjectPathResolverHook
from convbench.hooks.summary import ResultSummaryHook
from convbench.requirements import pip_requirements
from convbench.tracking import TRACKING_URI_RESOLVER, tracking_uri

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
    "custom_resolvers": {
        # ${convbench.pip_requirements:} in catalog.yml: the logged models' requirements, pinned (no inference)
        "convbench.pip_requirements": pip_requirements,
        # ${convbench.tracking_uri:<default>} in mlflow.yml: MLFLOW_TRACKING_URI where set
        TRACKING_URI_RESOLVER: tracking_uri,
    },
}
