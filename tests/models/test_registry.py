import inspect
from pathlib import Path

import pytest
from kedro.config import OmegaConfigLoader

from convbench.data.fer import LABEL_MODES
from convbench.models.registry import ARCHITECTURES, get_builder

CONF = Path(__file__).resolve().parents[2] / "conf"


@pytest.fixture(scope="module")
def recipes():
    training = OmegaConfigLoader(str(CONF), base_env="base", default_run_env="base")["parameters"]["training"]
    return {name: recipe for name, recipe in training.items() if name != "label_mode"}


def test_every_architecture_has_a_recipe_and_every_recipe_an_architecture(recipes):
    assert set(recipes) == set(ARCHITECTURES)


def test_the_default_label_mode_is_the_reference_majority_vote():
    training = OmegaConfigLoader(str(CONF), base_env="base", default_run_env="base")["parameters"]["training"]
    assert training["label_mode"] == "majority" and training["label_mode"] in LABEL_MODES


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_recipe_names_only_hyperparameters_its_builder_takes(recipes, name):
    parameters = inspect.signature(get_builder(name)).parameters
    for key in recipes[name].get("model") or {}:
        assert key in parameters and parameters[key].kind is inspect.Parameter.KEYWORD_ONLY, (name, key)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_recipe_is_complete(recipes, name):
    recipe = recipes[name]
    required = {"optimizer", "schedule", "epochs", "batch_size", "eval_batch_size", "augmentation", "seed"}
    assert required <= set(recipe), required - set(recipe)
    assert recipe["schedule"]["name"] in {"cosine", "piecewise", "constant"}
    if recipe["schedule"]["name"] == "piecewise":
        schedule = recipe["schedule"]
        assert len(schedule["values"]) == len(schedule["boundaries"]) + 1
        assert (
            list(schedule["boundaries"]) == sorted(schedule["boundaries"])
            and schedule["boundaries"][-1] < recipe["epochs"]
        )


def test_builders_are_shared_only_through_recipes(recipes):
    assert ARCHITECTURES["resnet_v2"] is ARCHITECTURES["resnet"]
    assert (recipes["resnet"]["model"]["version"], recipes["resnet_v2"]["model"]["version"]) == (1, 2)
    assert recipes["mobilenet_v2_imagenet"]["model"]["weights"] == "imagenet"
    assert recipes["mobilenet_v2"]["model"]["weights"] is None and "fine_tuning" not in recipes["mobilenet_v2"]


def test_unknown_architecture_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"Known architectures: .*densenet.*xception"):
        get_builder("lenet")


def test_smoke_env_shortens_every_recipe_to_one_epoch():
    loader = OmegaConfigLoader(
        str(CONF), base_env="base", default_run_env="smoke", merge_strategy={"parameters": "soft"}
    )
    smoke = loader["parameters"]["training"]
    for name in ARCHITECTURES:
        phases = [smoke[name], *([smoke[name]["fine_tuning"]] if smoke[name].get("fine_tuning") else [])]
        assert all(phase["epochs"] == 1 for phase in phases), (
            f"add `{name}: *one_short_epoch` under `training:` in conf/smoke/parameters_training.yml"
        )


def test_every_dataset_has_recipe_overrides_and_mnist_is_never_flipped():
    from convbench.pipeline_registry import DATASETS

    parameters = OmegaConfigLoader(str(CONF), base_env="base", default_run_env="base")["parameters"]
    assert set(parameters["recipe_overrides"]) == set(DATASETS)
    assert parameters["recipe_overrides"]["mnist"]["augmentation"]["horizontal_flip"] is False


def test_file_checks_fail_fast_on_missing_imagenet_weights_and_pass_otherwise(tmp_path, monkeypatch, recipes):
    from convbench.models.registry import check_files, needs_files
    from convbench.pipelines.training.nodes import check_model_files

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert needs_files("mobilenet_v2_imagenet") and needs_files("mobilenet_v2") and not needs_files("resnet")
    with pytest.raises(FileNotFoundError, match=r"MobileNetV2 ImageNet weights not found at .*1\.0_96_no_top\.h5"):
        check_model_files(recipes["mobilenet_v2_imagenet"], "mobilenet_v2_imagenet")
    check_files("mobilenet_v2", recipes["mobilenet_v2"]["model"])  # from scratch: nothing to read
    check_files("resnet", recipes["resnet"]["model"])
    weights = tmp_path / "own.h5"
    weights.write_bytes(b"stand-in")
    check_files("mobilenet_v2", {"weights": "imagenet", "weights_file": str(weights)})  # defaults filled in
    with pytest.raises(FileNotFoundError, match=r"0\.35_128_no_top\.h5"):
        check_files("mobilenet_v2", {"weights": "imagenet", "alpha": 0.35, "input_size": 128})
