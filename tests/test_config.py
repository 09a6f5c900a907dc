"""The parameters of a run: recipes, the dataset specs' layers, the smoke env and their precedence,
loaded from this project's real conf/ by the project's own config loader."""

import dataclasses
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from convbench.config import (
    RUN_RECIPE_SETTINGS,
    ConvbenchConfigLoader,
    DeprecatedParameterWarning,
    recipes,
)
from convbench.dataset_specs import DATASETS, DatasetSpec, dataset_of
from convbench.merging import deep_merge
from convbench.models.registry import ARCHITECTURES, get_builder
from convbench.pipelines.training.nodes import resolve_recipe
from convbench.settings import CONFIG_LOADER_ARGS
from convbench.training.optimizers import SCHEDULES

PROJECT = Path(__file__).resolve().parents[1]
CONF = PROJECT / "conf"


def load_parameters(conf: Path = CONF, env: str = "local", runtime_params: dict | None = None) -> dict:
    """`parameters` as `kedro run --env=<env> --params=...` sees them."""
    loader = ConvbenchConfigLoader(str(conf), env=env, runtime_params=runtime_params or {}, **CONFIG_LOADER_ARGS)
    return loader["parameters"]


def recipe_for(parameters: dict, dataset: str, architecture: str) -> dict:
    """What the training pipeline's `resolve_recipe` node makes of these parameters."""
    return resolve_recipe(
        parameters["training"][architecture],
        parameters["recipe_overrides"][dataset],
        parameters[RUN_RECIPE_SETTINGS][architecture],
    )


@pytest.fixture(scope="module")
def base_recipes():
    return recipes(load_parameters(env="base"))


@pytest.fixture
def conf_copy(tmp_path):
    """A copy of conf/ whose conf/local a test may write."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    for leftover in (conf / "local").glob("*.yml"):
        leftover.unlink()
    return conf


FLIP = ("augmentation", "horizontal_flip")


def flip(recipe: dict) -> bool:
    return recipe["augmentation"]["horizontal_flip"]


def test_precedence_is_command_line_then_conf_local_then_dataset_overrides_then_recipe(conf_copy):
    # recipe: flips; MNIST's spec: no flips; conf/local: 3 epochs; --params: flips again on MNIST.
    assert flip(recipe_for(load_parameters(conf_copy), "cifar10", "resnet")) is True
    assert flip(recipe_for(load_parameters(conf_copy), "mnist", "resnet")) is False
    cli = {"training": {"resnet": {"augmentation": {"horizontal_flip": True}}}}
    assert flip(recipe_for(load_parameters(conf_copy, runtime_params=cli), "mnist", "resnet")) is True

    (conf_copy / "local" / "parameters.yml").write_text(
        yaml.safe_dump({"training": {"resnet": {"epochs": 3, "augmentation": {"horizontal_flip": True}}}})
    )
    local = recipe_for(load_parameters(conf_copy), "mnist", "resnet")
    assert flip(local) is True and local["epochs"] == 3  # conf/local beats the dataset's overrides
    cli = {"training": {"resnet": {"epochs": 5, "augmentation": {"horizontal_flip": False}}}}
    both = recipe_for(load_parameters(conf_copy, runtime_params=cli), "mnist", "resnet")
    assert flip(both) is False and both["epochs"] == 5  # --params beats conf/local
    assert both["augmentation"]["pad_crop"] == 4 and both["model"]["depth"] == 20  # the rest: the recipe


def test_dataset_overrides_reach_every_architecture_and_only_their_dataset():
    parameters = load_parameters()
    for architecture in ("resnet", "densenet", "simple_cnn"):
        assert flip(recipe_for(parameters, "mnist", architecture)) is False
        assert flip(recipe_for(parameters, "cifar100", architecture)) is True
    assert parameters["recipe_overrides"] == {name: dict(spec.recipe_overrides) for name, spec in DATASETS.items()}


def test_conf_can_change_a_datasets_overrides_too(conf_copy):
    (conf_copy / "local" / "parameters.yml").write_text(
        yaml.safe_dump({"recipe_overrides": {"cifar10": {"label_smoothing": 0.1}}})
    )
    parameters = load_parameters(conf_copy)
    assert recipe_for(parameters, "cifar10", "resnet")["label_smoothing"] == 0.1
    assert recipe_for(parameters, "cifar100", "resnet")["label_smoothing"] == 0.0
    assert flip(recipe_for(parameters, "mnist", "resnet")) is False  # the spec's overrides stay


def test_smoke_env_shrinks_every_architecture_and_dataset_in_code():
    parameters = load_parameters(env="smoke")
    assert set(recipes(parameters)) == set(ARCHITECTURES)
    for name, recipe in recipes(parameters).items():
        phases = [recipe, *([recipe["fine_tuning"]] if recipe.get("fine_tuning") else [])]
        assert all(phase["epochs"] == 1 for phase in phases), name
        assert recipe["batch_size"] == 64 and "smoke" not in recipe, name
        resolved = recipe_for(parameters, "mnist", name)
        assert resolved["epochs"] == 1 and not flip(resolved), name
    written = yaml.safe_load((CONF / "base/parameters_training.yml").read_text())["training"]["resnet_v2"]
    smoke_depth = parameters["training"]["resnet_v2"]["model"]["depth"]
    assert smoke_depth == written["smoke"]["model"]["depth"] != written["model"]["depth"]  # its own `smoke:` block
    assert parameters["training"]["mobilenet_v2_imagenet"]["model"]["alpha"] == 0.35
    assert parameters["training"]["resnet"]["model"]["depth"] == 20  # no block: the full model


def test_every_dataset_gets_its_smoke_subset_in_the_smoke_env_and_none_otherwise():
    smoke, full = load_parameters(env="smoke")["preprocessing"], load_parameters()["preprocessing"]
    assert set(smoke) == set(full) == set(DATASETS)
    for name, spec in DATASETS.items():
        subset = smoke[name]["subset"]
        assert subset == dict(spec.smoke_subset) and set(subset) == {"train", "val", "test"}, name
        assert all(0 < size <= 1000 for size in subset.values()), name
        assert full[name]["subset"] is None and full[name]["seed"] == 42, name


def test_a_dataset_without_a_smoke_subset_cannot_be_declared():
    with pytest.raises(TypeError, match="smoke_subset"):
        DatasetSpec(name="toy", source_format="cifar_binary", class_names_from="x", val_size=10)
    with pytest.raises(
        ValueError, match=r"Dataset 'toy': smoke_subset must give a positive size for train, val and test"
    ):
        DatasetSpec(
            name="toy", source_format="cifar_binary", class_names_from="x", val_size=10, smoke_subset={"train": 8}
        )


def test_the_command_line_still_wins_in_the_smoke_env():
    parameters = load_parameters(env="smoke", runtime_params={"training": {"resnet": {"epochs": 3}}})
    assert recipe_for(parameters, "cifar10", "resnet")["epochs"] == 3
    assert recipe_for(parameters, "cifar10", "densenet")["epochs"] == 1


def test_preprocessing_defaults_come_from_the_specs_and_conf_changes_them(conf_copy):
    parameters = load_parameters(conf_copy, runtime_params={"preprocessing": {"cifar10": {"val_size": 1000}}})
    assert parameters["preprocessing"]["cifar10"] == {"seed": 42, "subset": None, "val_size": 1000}
    assert parameters["preprocessing"]["tinyimagenet"]["val_size"] == 10000
    assert parameters["preprocessing"]["ferplus"] == {"seed": 42, "subset": None, "label_mode": "majority"}


def test_label_mode_lives_in_preprocessing_and_the_old_key_still_works_with_a_warning():
    parameters = load_parameters(runtime_params={"preprocessing": {"ferplus": {"label_mode": "crossentropy"}}})
    assert parameters["preprocessing"]["ferplus"]["label_mode"] == "crossentropy"
    assert "label_mode" not in parameters["training"]
    with pytest.warns(DeprecatedParameterWarning, match=r"preprocessing\.ferplus\.label_mode=probability"):
        old = load_parameters(runtime_params={"training": {"label_mode": "probability"}})
    assert old["preprocessing"]["ferplus"]["label_mode"] == "probability"
    assert "label_mode" not in old["training"] and "label_mode" not in old[RUN_RECIPE_SETTINGS]
    both = {"training": {"label_mode": "probability"}, "preprocessing": {"ferplus": {"label_mode": "multi_target"}}}
    with pytest.warns(DeprecatedParameterWarning):
        assert load_parameters(runtime_params=both)["preprocessing"]["ferplus"]["label_mode"] == "multi_target"


def test_deep_merge_merges_key_by_key_and_a_block_of_another_kind_replaces_the_old_one():
    base = {"schedule": {"name": "cosine", "peak_lr": 0.1, "warmup_epochs": 1}, "augmentation": {"pad_crop": 4}}
    assert deep_merge(base, {"schedule": {"peak_lr": 0.01}})["schedule"] == {
        "name": "cosine",
        "peak_lr": 0.01,
        "warmup_epochs": 1,
    }
    assert deep_merge(base, {"schedule": {"name": "constant", "lr": 1e-4}})["schedule"] == {
        "name": "constant",
        "lr": 1e-4,
    }
    merged = deep_merge(base, {"augmentation": {"horizontal_flip": False}})
    assert merged["augmentation"] == {"pad_crop": 4, "horizontal_flip": False}
    assert base["augmentation"] == {"pad_crop": 4}  # the arguments are not changed
    in_epochs = {"budget": {"epochs": 5, "schedule": "recipe"}}
    assert deep_merge(in_epochs, {"budget": {"minutes": 10}})["budget"] == {"minutes": 10}
    assert deep_merge(in_epochs, {"budget": {"epochs": 8}})["budget"] == {"epochs": 8, "schedule": "recipe"}


def test_a_block_the_run_switches_to_another_kind_is_replaced_whole(conf_copy):
    """Kedro merges conf/<env> and --params key by key; the loader gives a switched block no keys of the old kind."""
    constant = {"name": "constant", "lr": 0.01}
    parameters = load_parameters(conf_copy, runtime_params={"training": {"resnet": {"schedule": constant}}})
    assert parameters["training"]["resnet"]["schedule"] == constant
    assert recipe_for(parameters, "cifar10", "resnet")["schedule"] == constant
    piecewise = {"name": "piecewise", "boundaries": [50, 75], "values": [0.1, 0.01, 0.001]}
    (conf_copy / "local" / "parameters.yml").write_text(
        yaml.safe_dump({"training": {"resnet": {"schedule": piecewise, "optimizer": {"name": "adam"}}}})
    )
    local = recipe_for(load_parameters(conf_copy), "cifar10", "resnet")
    assert (local["schedule"], local["optimizer"]) == (piecewise, {"name": "adam"})
    tuned = load_parameters(conf_copy, runtime_params={"training": {"resnet": {"schedule": {"values": [1, 2, 3]}}}})
    assert recipe_for(tuned, "cifar10", "resnet")["schedule"] == {**piecewise, "values": [1, 2, 3]}
    same_kind = load_parameters(
        conf_copy, env="base", runtime_params={"training": {"resnet": {"schedule": {"peak_lr": 0.05}}}}
    )
    assert same_kind["training"]["resnet"]["schedule"] == {
        "name": "cosine",
        "peak_lr": 0.05,
        "warmup_epochs": 1,
        "final_lr_fraction": 0.0,
    }


def test_a_run_budget_reaches_every_recipe_unless_the_run_gives_one_its_own():
    cli = {"training": {"budget": {"minutes": 10}, "airbench": {"budget": {"epochs": 3}}}}
    parameters = load_parameters(runtime_params=cli)
    assert "budget" not in recipes(parameters)  # the run's budget is no architecture
    assert recipe_for(parameters, "cifar10", "resnet")["budget"] == {"minutes": 10}
    assert recipe_for(parameters, "cifar100", "densenet")["budget"] == {"minutes": 10}
    assert recipe_for(parameters, "cifar10", "airbench")["budget"] == {"epochs": 3}
    assert "budget" not in recipe_for(load_parameters(), "cifar10", "resnet")  # no budget: the recipe's epochs


# ---- recipes against the architecture registry ---------------------------------------------------


def test_every_architecture_has_a_recipe_and_every_recipe_an_architecture(base_recipes):
    assert set(base_recipes) == set(ARCHITECTURES)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_recipe_and_its_smoke_block_name_only_hyperparameters_its_builder_takes(name):
    raw = yaml.safe_load((CONF / "base" / "parameters_training.yml").read_text())["training"][name]
    parameters = inspect.signature(get_builder(name)).parameters
    for key in {**(raw.get("model") or {}), **((raw.get("smoke") or {}).get("model") or {})}:
        assert key in parameters and parameters[key].kind is inspect.Parameter.KEYWORD_ONLY, (name, key)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_recipe_is_complete(base_recipes, name):
    recipe = base_recipes[name]
    required = {"optimizer", "schedule", "epochs", "batch_size", "eval_batch_size", "augmentation", "seed"}
    assert required <= set(recipe), required - set(recipe)
    assert recipe["schedule"]["name"] in SCHEDULES
    if recipe["schedule"]["name"] == "piecewise":
        schedule = recipe["schedule"]
        assert len(schedule["values"]) == len(schedule["boundaries"]) + 1
        assert (
            list(schedule["boundaries"]) == sorted(schedule["boundaries"])
            and schedule["boundaries"][-1] < recipe["epochs"]
        )


def test_builders_are_shared_only_through_recipes(base_recipes):
    assert ARCHITECTURES["resnet_v2"] is ARCHITECTURES["resnet"]
    assert (base_recipes["resnet"]["model"]["version"], base_recipes["resnet_v2"]["model"]["version"]) == (1, 2)
    assert base_recipes["mobilenet_v2_imagenet"]["model"]["weights"] == "imagenet"
    assert (
        base_recipes["mobilenet_v2"]["model"]["weights"] is None and "fine_tuning" not in base_recipes["mobilenet_v2"]
    )


# ---- the dataset specs -----------------------------------------------------------------------------


def test_specs_are_frozen_and_name_themselves():
    for name, spec in DATASETS.items():
        assert spec.name == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.name = "other"  # type: ignore[misc]
        with pytest.raises(TypeError):
            spec.recipe_overrides["epochs"] = 1  # type: ignore[index]
    assert [name for name, spec in DATASETS.items() if spec.crowd_labelled] == ["ferplus"]
    assert [name for name, spec in DATASETS.items() if spec.coarse_labels] == ["cifar100"]


@pytest.mark.parametrize(
    ("pipeline_name", "dataset"),
    [
        ("cifar10_resnet", "cifar10"),
        ("cifar100_ingestion", "cifar100"),
        ("__default__", "cifar10"),
        ("cifar10", "cifar10"),
        ("cifar100", "cifar100"),
        ("cifar100_leaderboard", "cifar100"),
        ("cifar10_mobilenet_v2_imagenet", "cifar10"),
        ("ferplus_vgg13", "ferplus"),
        ("other", None),
    ],
)
def test_dataset_of_pipeline_names(pipeline_name, dataset):
    assert dataset_of(pipeline_name) == dataset


def test_kedro_help_and_the_project_settings_do_not_import_tensorflow():
    """`settings.py` (hooks, config loader) loads for every `kedro` command: it must stay light."""
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [str(kedro), "--help"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": str(kedro.parent), "PYTHONPROFILEIMPORTTIME": "1", "KEDRO_DISABLE_TELEMETRY": "true"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Project specific commands from kedro" in result.stdout  # run inside the project: its commands load
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert "convbench" in imported  # the project's settings were loaded...
    assert not {"tensorflow", "keras"} & imported  # ...without TensorFlow or Keras
