"""`${convbench.project_path:}`: the Kedro project's folder, for paths in the configuration."""

from __future__ import annotations

from pathlib import Path

from kedro.framework.hooks import hook_impl
from omegaconf import OmegaConf

PROJECT_PATH_RESOLVER = "convbench.project_path"
"""`${convbench.project_path:}` in the configuration: the Kedro project's folder (see `ProjectPathResolverHook`)."""


class ProjectPathResolverHook:
    """Lets the configuration name files in the project's folder, wherever Kedro is started from.

    `mlflow.yml` points at `${convbench.tracking_uri:sqlite:///${convbench.project_path:}/mlflow.db}`
    (`convbench.tracking.tracking_uri`, registered in `settings.py`): a shared server when
    `MLFLOW_TRACKING_URI` is set, else the embedded store. kedro-mlflow leaves sqlite URIs as they
    are, so a relative one would open another, empty store when the working folder is not the
    project's (a notebook in `notebooks/` under `kedro jupyter`). The project's folder is known
    only once the context exists, hence a hook, which runs before kedro-mlflow reads `mlflow.yml`.
    """

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        project_path = str(Path(context.project_path).resolve())
        OmegaConf.register_resolver(PROJECT_PATH_RESOLVER, lambda: project_path, replace=True)
