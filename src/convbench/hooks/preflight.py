"""A run whose inputs are missing stops before its first node, saying what to place or run."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

from convbench.dataset_specs import DATASETS

PREFLIGHT_TAG = "preflight"
"""Tag of cheap nodes that check what the user must provide (files, recipes); `PreflightHook` runs them first."""


class PreflightHook:
    """Runs the pipeline's nodes tagged `preflight` before anything else.

    They check what no node can fetch or fix: a file the user must place (FER2013, pretrained
    weights) and the recipes the run trains with (`resolve_recipe`, `check_claim_recipe`). So a
    run that cannot finish stops at once with their message instead of after earlier nodes ran
    (a download, or hours of earlier claims). They read parameters only, and run again in their
    place in the pipeline.
    """

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        check_prepared_data(pipeline, catalog, run_params.get("env"))
        for node in pipeline.only_nodes_with_tags(PREFLIGHT_TAG).nodes:
            node.run({name: catalog.load(name) for name in node.inputs})


class MissingPreparedDataError(RuntimeError):
    """A pipeline reads a dataset's arrays that no earlier run has written."""


def check_prepared_data(pipeline, catalog, env: str | None = None) -> None:
    """Fails at once, with the command that prepares them, when a pipeline's dataset inputs are missing.

    Pipelines that read prepared data without producing it (`<dataset>_<arch>_search`, or a
    training run filtered with `--tags`) would otherwise stop at their first node on a file error.
    """
    missing: dict[str, list[str]] = {}
    for name in sorted(pipeline.inputs()):
        dataset = name.split(".", 1)[0]
        if dataset in DATASETS and name.count(".") == 1 and not catalog.exists(name):
            missing.setdefault(dataset, []).append(
                str(catalog.config_resolver.resolve_pattern(name).get("filepath", name))
            )
    if missing:
        env_flag = f" --env={env}" if env and env != "local" else ""
        raise MissingPreparedDataError(
            "; ".join(
                f"This pipeline reads the prepared {dataset} data, which is not there yet ({', '.join(files)}). "
                f"Prepare it once with: kedro run --pipelines={dataset}_data{env_flag}"
                for dataset, files in missing.items()
            )
        )
