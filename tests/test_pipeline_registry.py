from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset

from convbench.dataset_specs import DATASETS
from convbench.datasets import NumpyDataset
from convbench.models.registry import ARCHITECTURES
from convbench.pipeline_registry import register_pipelines

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def pipelines():
    return register_pipelines()


@pytest.fixture(scope="module")
def catalog():
    from convbench.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(
        str(CONF), base_env="base", default_run_env="smoke", custom_resolvers=CONFIG_LOADER_ARGS["custom_resolvers"]
    )
    return DataCatalog.from_config(loader["catalog"])


def test_every_dataset_has_ingestion_preprocessing_and_resnet_pipelines(pipelines):
    for dataset in ("cifar10", "cifar100", "mnist", "tinyimagenet", "ferplus"):
        assert {f"{dataset}_ingestion", f"{dataset}_preprocessing", f"{dataset}_resnet"} <= set(pipelines)
    assert pipelines["__default__"].nodes == pipelines["cifar10_resnet"].nodes


def test_experiment_pipeline_runs_from_parameters_alone(pipelines):
    inputs = pipelines["cifar10_resnet"].inputs()
    assert {i for i in inputs if not i.startswith("params:")} == {"cifar10.resnet.checkpoint_dir"}
    assert {"params:ingestion.cifar10.source", "params:preprocessing.cifar10", "params:training.resnet"} <= inputs


def test_names_are_namespaced_per_dataset_and_architecture(pipelines):
    names = {node.name for node in pipelines["cifar100_resnet"].nodes}
    assert {"cifar100.download_archive", "cifar100.split_dataset", "cifar100.resnet.train_model"} <= names
    outputs = pipelines["cifar100_ingestion"].outputs()
    assert {"cifar100.train_coarse_labels", "cifar100.coarse_class_names"} <= outputs
    assert "cifar10.train_coarse_labels" not in pipelines["cifar10_ingestion"].outputs()


def test_every_dataset_has_a_pipeline_per_architecture_one_for_all_and_a_leaderboard(pipelines):
    for dataset in ("cifar10", "cifar100"):
        assert {f"{dataset}_{architecture}" for architecture in ARCHITECTURES} <= set(pipelines)
        assert {dataset, f"{dataset}_leaderboard"} <= set(pipelines)


def test_dataset_pipeline_trains_every_architecture_on_one_copy_of_the_data_then_ranks_them(pipelines):
    names = {node.name for node in pipelines["cifar10"].nodes}
    assert {f"cifar10.{architecture}.train_model" for architecture in ARCHITECTURES} <= names
    assert sum(name.endswith("parse_archive") for name in names) == 1
    leaderboard = next(node for node in pipelines["cifar10"].nodes if node.name == "cifar10.build_leaderboard")
    assert set(leaderboard.inputs) == {f"cifar10.{architecture}.metrics_table" for architecture in ARCHITECTURES}
    assert pipelines["cifar10"].nodes[-1] == leaderboard  # topologically last
    assert not any(node.name.startswith("cifar100.") for node in pipelines["cifar10"].nodes)


def test_leaderboard_pipeline_alone_needs_no_data(pipelines):
    (node,) = pipelines["cifar10_leaderboard"].nodes
    assert node.inputs == [] and set(node.outputs) == {
        "cifar10.leaderboard",
        "cifar10.leaderboard_markdown",
        "cifar10.leaderboard_plot",
    }


def test_recipes_reach_training_by_architecture_name_with_their_dataset_and_run_layers(pipelines):
    inputs = pipelines["mnist_densenet"].inputs()
    assert "params:training.densenet" in inputs and "params:training.resnet" not in inputs
    recipe = next(node for node in pipelines["mnist_densenet"].nodes if node.name == "mnist.densenet.resolve_recipe")
    assert recipe.inputs == [
        "params:training.densenet",
        "params:recipe_overrides.mnist",
        "params:run_recipe_settings.densenet",
    ]


def test_every_dataset_spec_has_an_ingestion_template_and_its_pipelines(pipelines):
    from convbench.pipelines.ingestion.pipeline import TEMPLATES

    for name, spec in DATASETS.items():
        assert spec.source_format in TEMPLATES, name
        assert {f"{name}_ingestion", f"{name}_preprocessing", name, f"{name}_leaderboard"} <= set(pipelines)
        assert f"params:ingestion.{name}.source" in pipelines[f"{name}_ingestion"].inputs(), name


HANDED_OVER_IN_MEMORY = {
    "cifar": {"archive_path"},
    "mnist": {"raw_paths"},
    "tinyimagenet": {"archive_path"},
    "ferplus": {"fer2013_path", "ferplus_path"},
}


@pytest.mark.parametrize(
    "pipeline_name",
    ["cifar10_resnet", "cifar100_resnet", "cifar10", "mnist_mlp", "tinyimagenet_resnet", "ferplus_vgg13"],
)
def test_catalog_factories_persist_everything_but_the_archive_path_and_model_handover(
    pipelines, catalog, pipeline_name
):
    in_memory, filepaths = set(), {}
    for name in pipelines[pipeline_name].datasets():
        if name.startswith("params:"):
            continue
        dataset = catalog.get(name) if hasattr(catalog, "get") else catalog[name]
        if dataset is None or isinstance(dataset, MemoryDataset):
            in_memory.add(name.split(".")[-1])
        description = catalog.config_resolver.resolve_pattern(name)
        target = str(description.get("filepath") or description.get("dataset", {}).get("filepath") or "")
        if name.endswith(("_images", "_labels", "_indices")):
            assert isinstance(dataset, NumpyDataset), name
            assert target.endswith(name.replace(".", "/", 1).split(".")[-1] + ".npy"), name
        if target:
            assert target not in filepaths, f"{name} and {filepaths.get(target)} share {target}"
            filepaths[target] = name
    raw_paths = next(paths for prefix, paths in HANDED_OVER_IN_MEMORY.items() if pipeline_name.startswith(prefix))
    assert in_memory == raw_paths | {"untrained_model"}
    assert len(filepaths) >= 20 and all(path.startswith("data/smoke/") for path in filepaths), filepaths


def test_ferplus_is_labelled_by_its_preprocessing_label_mode_and_keeps_its_predefined_splits(pipelines, catalog):
    names = {node.name for node in pipelines["ferplus_preprocessing"].nodes}
    assert {"ferplus.label_crowd_votes", "ferplus.predefined_split"} <= names and "ferplus.split_dataset" not in names
    assert "params:preprocessing.ferplus.label_mode" in pipelines["ferplus_preprocessing"].inputs()
    train = next(node for node in pipelines["ferplus_vgg13"].nodes if node.name == "ferplus.vgg13.train_model")
    assert "ferplus.train_targets" in train.inputs and "ferplus.train_labels" not in train.inputs
    recipe = next(node for node in pipelines["ferplus_vgg13"].nodes if node.name == "ferplus.vgg13.resolve_recipe")
    assert recipe.inputs[-1] == "params:preprocessing.ferplus.label_mode"
    # Labels derived from the votes live with the model inputs, not with the parsed arrays.
    for name in ("ferplus.train_labels", "ferplus.test_labels", "ferplus.train_targets"):
        path = catalog.config_resolver.resolve_pattern(name)["filepath"]
        assert path.startswith("data/smoke/05_model_input/ferplus/"), (name, path)
    assert "cifar10/train_labels" in catalog.config_resolver.resolve_pattern("cifar10.train_labels")["filepath"]
    assert not any("label_mode" in name for name in pipelines["cifar10_resnet"].inputs())


RECIPE_CHECKS = ("resolve_recipe", "resolve_search_recipe", "check_claim_recipe")
"""The preflight nodes that check a recipe; the others check a file the user must place."""


def _preflight(pipelines, recipes: bool) -> dict[str, set[str]]:
    """Per pipeline, its preflight nodes that check recipes (or files), where it has any."""
    found = {
        name: {
            node.name
            for node in pipeline.only_nodes_with_tags("preflight").nodes
            if node.name.rsplit(".", 1)[-1].endswith(RECIPE_CHECKS) == recipes
        }
        for name, pipeline in pipelines.items()
    }
    return {name: nodes for name, nodes in found.items() if nodes}


def test_only_pipelines_that_need_a_file_no_run_can_fetch_check_it_first(pipelines):
    """FER2013 (placed by the user) and the ImageNet weights of MobileNetV2 are checked before anything runs."""
    preflight = _preflight(pipelines, recipes=False)
    assert preflight["ferplus_resnet"] == {"ferplus.locate_fer2013"}
    assert preflight["cifar10_mobilenet_v2_imagenet"] == {"cifar10.mobilenet_v2_imagenet.check_model_files"}
    assert preflight["cifar10_mobilenet_v2"] == {
        "cifar10.mobilenet_v2.check_model_files"
    }  # weights: imagenet by --params
    assert "cifar10.mobilenet_v2_imagenet.check_model_files" in preflight["cifar10"]
    assert "__default__" not in preflight and "cifar10_resnet" not in preflight and "mnist_mlp" not in preflight
    assert preflight["reproduce"] >= {"ferplus.locate_fer2013"} and "reproduce_mnist_mlp" not in preflight
    assert preflight["reproduce_ferplus_vgg13_majority"] == {"ferplus.locate_fer2013"}
    assert all(
        name.startswith(("ferplus", "reproduce")) or "mobilenet" in name or name in DATASETS for name in preflight
    )


def test_every_recipe_a_run_trains_is_checked_before_its_first_node(pipelines):
    """Each training, search and claim node has its recipe's check among the run's preflight nodes."""
    recipe_checks = _preflight(pipelines, recipes=True)
    assert recipe_checks["cifar10_resnet"] == {"cifar10.resnet.resolve_recipe"}
    assert recipe_checks["cifar10_resnet_search"] == {"cifar10.resnet.resolve_search_recipe"}
    assert recipe_checks["reproduce_mnist_mlp"] == {"mnist.claim_mnist_mlp.check_claim_recipe"}
    for name, pipeline in pipelines.items():
        for node in pipeline.nodes:
            namespace, short = node.name.rsplit(".", 1) if "." in node.name else ("", node.name)
            check = {"train_model": "resolve_recipe", "reproduce_claim": "check_claim_recipe"}.get(short)
            if check and not namespace.endswith("_search"):
                assert f"{namespace}.{check}" in recipe_checks.get(name, set()), (name, node.name)


def _catalog_of_parameters(runtime_params: dict) -> DataCatalog:
    """Every `params:<dotted key>` of the smoke env's parameters with `runtime_params` (as `--params` sets them)."""
    from convbench.config import ConvbenchConfigLoader
    from convbench.settings import CONFIG_LOADER_ARGS

    loader = ConvbenchConfigLoader(str(CONF), env="smoke", runtime_params=runtime_params, **CONFIG_LOADER_ARGS)
    datasets = {}

    def add(prefix: str, value) -> None:
        datasets[prefix] = MemoryDataset(value)
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}.{key}", inner)

    for key, value in loader["parameters"].items():
        add(f"params:{key}", value)
    return DataCatalog(datasets)


@pytest.mark.parametrize(
    ("pipeline", "runtime_params", "message"),
    [
        ("cifar10_resnet", {"training": {"resnet": {"epoch": 3}}}, r"training\.resnet\.epoch is unknown"),
        (
            "reproduce_mnist_mlp",
            {"claims": {"mnist_mlp": {"recipe": {"label_smoothing": 2}}}},
            r"claims\.mnist_mlp: training\.mlp\.label_smoothing must be a number in \[0, 1\]",
        ),
    ],
)
def test_a_recipe_mistake_stops_the_run_before_its_first_node(pipelines, pipeline, runtime_params, message):
    from convbench.hooks.preflight import PreflightHook
    from convbench.training.recipe import RecipeError

    catalog = _catalog_of_parameters(runtime_params)
    PreflightHook().before_pipeline_run({"env": "smoke"}, pipelines[pipeline], _catalog_of_parameters({}))
    with pytest.raises(RecipeError, match=message):
        PreflightHook().before_pipeline_run({"env": "smoke"}, pipelines[pipeline], catalog)


def test_every_architecture_has_a_search_on_the_prepared_data_and_a_space_to_search(pipelines):
    import yaml

    from convbench.search.space import parse_space, with_values

    spaces = yaml.safe_load((CONF / "base/parameters_search.yml").read_text())["search"]["spaces"]
    recipes = yaml.safe_load((CONF / "base/parameters_training.yml").read_text())["training"]
    for dataset in DATASETS:
        assert (
            pipelines[f"{dataset}_data"].nodes
            == (pipelines[f"{dataset}_ingestion"] + pipelines[f"{dataset}_preprocessing"]).nodes
        )
        for architecture in ARCHITECTURES:
            search = pipelines[f"{dataset}_{architecture}_search"]
            prepared = pipelines[f"{dataset}_data"].all_outputs()
            assert {name for name in search.inputs() if not name.startswith("params:")} - prepared == {
                f"{dataset}.{architecture}.search_dir"
            }, "a search reads the prepared data and writes none of it"
            assert not search.all_outputs() & prepared
    for architecture in ARCHITECTURES:  # every space is valid and applies to its recipe
        dimensions = parse_space(architecture, spaces.get(architecture))
        values = {
            d.key: d.choices[0] if d.choices else (d.low if d.kind == "float" else int(d.low)) for d in dimensions
        }
        with_values(recipes[architecture], values)


def test_a_pipeline_is_built_when_first_asked_for_and_only_once():
    from kedro.pipeline import Pipeline

    from convbench.pipeline_registry import LazyPipelines

    built = []

    def factory(name):
        def build():
            built.append(name)
            return Pipeline([])

        return build

    pipelines = LazyPipelines({"a": factory("a"), "b": factory("b")})
    assert list(pipelines) == ["a", "b"] and len(pipelines) == 2 and built == []
    assert pipelines["a"] is pipelines["a"]
    assert built == ["a"]  # `b` was never asked for
    with pytest.raises(KeyError):
        pipelines["c"]
    assert set(dict(pipelines)) == {"a", "b"} and built == ["a", "b"]
