"""The recipe schema (convbench.training.recipe): every recipe conf/ makes passes it and is left as it was,
every kind of mistake is refused with its key path and what the key takes, the defaults are the ones the
training code and Keras use, and docs/recipe.md is written from it."""

import inspect
import pickle
import re
from pathlib import Path

import keras
import optuna
import pytest
import yaml
from tiny_training import RECIPE

from convbench.claims import check_claims
from convbench.config import RUN_RECIPE_SETTINGS, ConvbenchConfigLoader, recipes
from convbench.dataset_specs import DATASETS
from convbench.merging import deep_merge
from convbench.models.registry import ARCHITECTURES
from convbench.pipelines.reproduce.nodes import claim_recipe
from convbench.pipelines.training.nodes import resolve_recipe
from convbench.search.space import check_space, parse_space, with_values
from convbench.settings import CONFIG_LOADER_ARGS
from convbench.training import recipe as schema
from convbench.training.recipe import RecipeError, check_block, check_recipe

PROJECT = Path(__file__).resolve().parents[2]


def load_parameters(env: str, runtime_params: dict | None = None) -> dict:
    loader = ConvbenchConfigLoader(
        str(PROJECT / "conf"), env=env, runtime_params=runtime_params or {}, **CONFIG_LOADER_ARGS
    )
    return loader["parameters"]


@pytest.fixture(scope="module", params=["base", "smoke"])
def parameters(request):
    return load_parameters(request.param)


def resolved(parameters: dict, dataset: str, architecture: str) -> dict:
    """`resolve_recipe` as the training pipeline calls it for this dataset and architecture."""
    label_mode = parameters["preprocessing"][dataset].get("label_mode") if DATASETS[dataset].crowd_labelled else None
    return resolve_recipe(
        parameters["training"][architecture],
        parameters["recipe_overrides"][dataset],
        parameters[RUN_RECIPE_SETTINGS][architecture],
        label_mode,
        architecture=architecture,
    )


# ---- every recipe conf/ makes passes ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_each_recipe_of_conf_base_passes_with_its_smoke_block(name):
    raw = yaml.safe_load((PROJECT / "conf" / "base" / "parameters_training.yml").read_text())["training"][name]
    check_recipe(raw, f"training.{name}", name)


def test_every_resolved_recipe_passes_for_every_dataset_and_is_left_as_it_was(parameters):
    """The check validates only: what `resolve_recipe` saves (recipe.json, MLflow, the hashes) is the merge."""
    assert set(recipes(parameters)) == set(ARCHITECTURES)
    for dataset in DATASETS:
        for architecture in ARCHITECTURES:
            recipe = resolved(parameters, dataset, architecture)
            merged = deep_merge(
                deep_merge(parameters["training"][architecture], parameters["recipe_overrides"][dataset]),
                parameters[RUN_RECIPE_SETTINGS][architecture],
            )
            if DATASETS[dataset].crowd_labelled:
                merged["label_mode"] = parameters["preprocessing"][dataset]["label_mode"]
            assert recipe == merged, (dataset, architecture)


def test_every_claims_recipe_passes(parameters):
    """In the smoke env too, where the shrink's `schedule.warmup_epochs: 0` meets claims with other schedules."""
    claims = check_claims(parameters["claims"])
    assert claims
    for claim in claims.values():
        assert claim_recipe(claim, parameters)["epochs"] >= 1, claim.id


def test_a_claim_trains_the_courses_augmentation_not_convbenchs():
    """The course trained its CNN and AlexNet without augmentation; convbench's recipes have some."""
    parameters = load_parameters("base")
    claims = check_claims(parameters["claims"])
    assert parameters["training"]["simple_cnn"]["augmentation"] and parameters["training"]["alexnet"]["augmentation"]
    for claim_id in ("cifar10_cnn", "cifar10_alexnet", "mnist_resmlp_shallow", "cifar10_mlp"):
        assert not claim_recipe(claims[claim_id], parameters)["augmentation"], claim_id
    assert claim_recipe(claims["cifar10_cnn_augmented"], parameters)["augmentation"] == {
        "pad_crop": 3,
        "horizontal_flip": True,
    }


def test_an_empty_block_in_a_claims_recipe_is_refused_as_the_no_change_it_merges_to():
    parameters = load_parameters("base")
    claim = check_claims({"cnn": {**parameters["claims"]["cifar10_cnn"], "recipe": {"augmentation": {}}}})["cnn"]
    with pytest.raises(
        ValueError,
        match=r"^claims\.cnn\.recipe\.augmentation is \{\}, which merges into "
        r"training\.simple_cnn\.augmentation \(.*\) as no change: write `augmentation: null`",
    ):
        claim_recipe(claim, parameters)


def test_a_run_setting_a_claims_recipe_does_not_take_is_refused_naming_the_claim():
    parameters = load_parameters("base", {"training": {"resnet": {"schedule": {"peak_lr": 0.05}}}})
    claims = check_claims(parameters["claims"])
    assert claims["cifar10_resnet20"].recipe["schedule"]["name"] == "piecewise"
    with pytest.raises(
        RecipeError,
        match=r"^claims\.cifar10_resnet20: training\.resnet\.schedule\.peak_lr is unknown: a piecewise schedule",
    ):
        claim_recipe(claims["cifar10_resnet20"], parameters)


def test_recipes_sampled_from_every_search_space_pass(parameters):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    search = parameters["search"]
    for architecture, space in search["spaces"].items():
        base = resolved(parameters, "cifar10", architecture)
        dimensions = parse_space(architecture, space)
        check_space(dimensions, base, architecture)
        samples = [{dimension.key: value} for dimension in dimensions for value in dimension.extremes()]
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(5):
            trial = study.ask()
            samples.append({dimension.key: dimension.suggest(trial) for dimension in dimensions})
        for values in samples:
            trial_recipe = {**with_values(base, values), "budget": search["trial_budget"]}
            check_recipe(trial_recipe, f"training.{architecture}", architecture)


@pytest.fixture(scope="module")
def resnet_on_cifar10():
    return resolved(load_parameters("base"), "cifar10", "resnet")


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"label_smoothing": {"low": 0.0, "high": 1.5}}, r"label_smoothing reaches 1\.5, which the recipe refuses"),
        ({"batch_size": {"choices": [128, "big"]}}, r"batch_size reaches 'big', which the recipe refuses"),
        ({"model.widht": {"low": 1, "high": 2, "type": "int"}}, r"model\.widht reaches 1, which the recipe refuses"),
        ({"learning_rate": {"low": -0.1, "high": 0.1}}, r"learning_rate reaches -0\.1, which the recipe refuses"),
    ],
)
def test_a_space_whose_edge_breaks_the_recipe_is_refused_before_any_trial(resnet_on_cifar10, space, message):
    dimensions = parse_space("resnet", space)
    with pytest.raises(ValueError, match=r"^search\.spaces\.resnet\." + message):
        check_space(dimensions, resnet_on_cifar10, "resnet")


# ---- mistakes are refused with their key path and what the key takes --------------------------------


@pytest.fixture(scope="module")
def resnet():
    return load_parameters("base")["training"]["resnet"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # unknown keys, at any depth, with the closest known key and every allowed one
        (
            {"epoch": 3},
            r"training\.resnet\.epoch is unknown \(did you mean epochs\?\): a recipe takes model, optimizer, "
            r"schedule, epochs, .*, label_mode or smoke",
        ),
        (
            {"schedule": {"peak_rate": 0.2}},
            r"training\.resnet\.schedule\.peak_rate is unknown \(did you mean peak_lr\?\): a cosine schedule takes "
            r"name, peak_lr, warmup_epochs or final_lr_fraction",
        ),
        (
            {"optimizer": {"name": "adam", "momentum": 0.9}},
            r"training\.resnet\.optimizer\.momentum is unknown: an adam optimizer takes name, beta_1, beta_2, "
            r"epsilon, amsgrad, weight_decay",
        ),
        (
            {"model": {"deph": 56}},
            r"training\.resnet\.model\.deph is unknown \(did you mean depth\?\): build_resnet takes .*depth",
        ),
        ({"augmentation": {"cutout": 8}}, r"training\.resnet\.augmentation\.cutout is unknown: augmentation takes"),
        # unknown names
        (
            {"optimizer": {"name": "sgdd"}},
            r"training\.resnet\.optimizer\.name must be sgd, adam or adamw; received 'sgdd'",
        ),
        (
            {"schedule": {"name": "onecycle"}},
            r"training\.resnet\.schedule\.name must be cosine, piecewise, constant or triangular; received 'onecycle'",
        ),
        (
            {"augmentation": {"pad_mode": "wrap"}},
            r"training\.resnet\.augmentation\.pad_mode must be constant or reflect; received 'wrap'",
        ),
        (
            {"mixed_precision": "float8"},
            r"training\.resnet\.mixed_precision must be bfloat16, float16 or null; received 'float8'",
        ),
        ({"jit_compile": "yes"}, r"training\.resnet\.jit_compile must be auto, true or false; received 'yes'"),
        (
            {"budget": {"epochs": 3, "schedule": "cosine"}},
            r"training\.resnet\.budget\.schedule must be linear or recipe; received 'cosine'",
        ),
        # wrong types: nothing is converted (a flag is not a number, a word is not a flag)
        ({"epochs": "ten"}, r"training\.resnet\.epochs must be a whole number >= 1; received 'ten'"),
        ({"batch_size": True}, r"training\.resnet\.batch_size must be a whole number >= 1; received True"),
        ({"epochs": 2.5}, r"training\.resnet\.epochs must be a whole number >= 1; received 2\.5"),
        (
            {"augmentation": {"horizontal_flip": "yes"}},
            r"training\.resnet\.augmentation\.horizontal_flip must be true, false or alternating; received 'yes'",
        ),
        (
            {"tta": [1]},
            r"training\.resnet\.tta must be null or a mapping such as \{flip: true, translate: 1\}; received \[1\]",
        ),
        # values out of range
        ({"label_smoothing": 1.5}, r"training\.resnet\.label_smoothing must be a number in \[0, 1\]; received 1\.5"),
        (
            {"schedule": {"peak_lr": -0.1}},
            r"training\.resnet\.schedule\.peak_lr must be a positive number; received -0\.1",
        ),
        ({"ema": {"decay": 1.0}}, r"training\.resnet\.ema\.decay must be a number in \(0, 1\); received 1\.0"),
        ({"lookahead": {"every": 0}}, r"training\.resnet\.lookahead\.every must be a whole number >= 1; received 0"),
        ({"budget": {"minutes": 0}}, r"training\.resnet\.budget\.minutes must be a positive number; received 0"),
        (
            {"schedule": {"name": "piecewise", "boundaries": [50, 10], "values": [0.1, 0.01, 0.001]}},
            r"training\.resnet\.schedule\.boundaries must be a list of epochs \(numbers >= 0\) in increasing order; "
            r"received \[50, 10\]",
        ),
        (
            {"schedule": {"name": "piecewise", "boundaries": [10], "values": [0.1, 0.01, 0.001]}},
            r"training\.resnet\.schedule\.values needs one value more than boundaries; received 1 boundaries and 3",
        ),
        # missing and contradictory keys
        (
            {"schedule": {"name": "constant"}},
            r"training\.resnet\.schedule\.lr is missing: a constant schedule needs lr",
        ),
        ({"distribute": {"scale": "none"}}, r"training\.resnet\.distribute\.strategy is missing: distribute needs"),
        (
            {"budget": {"minutes": 5, "epochs": 3}},
            r"training\.resnet\.budget needs exactly one of minutes and epochs; received \{'minutes': 5, 'epochs': 3\}",
        ),
        (
            {"early_stopping": {"monitor": "lr"}},
            r"training\.resnet\.early_stopping: early stopping cannot tell whether 'lr' should fall or rise: give "
            r"the recipe's early_stopping mode: min or mode: max",
        ),
        # a fine-tuning phase is checked as the recipe it makes
        (
            {"fine_tuning": {"epochs": 2, "schedule": {"name": "constant"}}},
            r"training\.resnet\.fine_tuning\.schedule\.lr is missing: a constant schedule needs lr \(in the "
            r"fine-tuning phase\)",
        ),
    ],
)
def test_a_mistake_is_refused_naming_its_key_path_and_what_the_key_takes(resnet, settings, message):
    with pytest.raises(RecipeError, match=message) as refused:
        resolve_recipe(resnet, None, settings, architecture="resnet")
    assert len(refused.value.problems) == 1 and "docs/recipe.md" in str(refused.value)


@pytest.mark.parametrize("pipeline", ["training", "search"])
def test_the_pipelines_resolve_node_checks_the_recipe_of_its_architecture(pipeline):
    from convbench.pipelines.search.pipeline import create_pipeline as search_pipeline
    from convbench.pipelines.training.pipeline import create_pipeline as training_pipeline

    create = {"training": training_pipeline, "search": search_pipeline}[pipeline]
    (node,) = [node for node in create("mnist", "densenet").nodes if "resolve" in node.name]
    with pytest.raises(RecipeError, match=r"^training\.densenet\.epochs must be a whole number >= 1; received 0"):
        node.func(RECIPE, None, {"epochs": 0})


def test_every_problem_of_a_recipe_is_reported_at_once(resnet):
    settings = {"epochs": 0, "optimizer": {"name": "lion"}, "model": {"with": 2}, "tta": {"flip": 1}}
    with pytest.raises(RecipeError) as refused:
        resolve_recipe(resnet, None, settings, architecture="resnet")
    assert [problem.split(" ", 1)[0] for problem in refused.value.problems] == [
        "training.resnet.optimizer.name",
        "training.resnet.epochs",
        "training.resnet.tta.flip",
        "training.resnet.model.with",
    ]
    assert str(refused.value).startswith("4 problems in training.resnet:\n  - training.resnet.optimizer.name")


def test_a_recipe_error_survives_pickling_as_parallel_runners_send_it():
    error = RecipeError(["epochs must be a whole number >= 1; received 0", "seed is missing"], "training.mlp")
    again = pickle.loads(pickle.dumps(error))
    assert (again.problems, str(again)) == (error.problems, str(error)) and isinstance(again, ValueError)


def test_without_an_architecture_the_paths_start_at_the_recipe_and_model_keys_are_not_checked():
    with pytest.raises(RecipeError, match=r"^schedule\.warmup_epochs must be a number >= 0; received -1"):
        resolve_recipe(RECIPE, None, {"schedule": {"warmup_epochs": -1}})
    assert resolve_recipe({**RECIPE, "model": {"anything": 1}}, None, None)["model"] == {"anything": 1}


def test_a_smoke_block_is_checked_merged_over_its_recipe():
    raw = {**RECIPE, "smoke": {"model": {"dept": 8}, "batch_size": 0}}
    with pytest.raises(RecipeError) as refused:
        check_recipe(raw, "training.resnet", "resnet")
    assert refused.value.problems == [
        "training.resnet.smoke.batch_size must be a whole number >= 1; received 0 (in the smoke env's recipe)",
        "training.resnet.smoke.model.dept is unknown (did you mean depth?): build_resnet takes "
        "depth, version, weight_decay, shortcut or name (in the smoke env's recipe)",
    ]


# ---- the blocks the training code checks, and their defaults ------------------------------------------


def test_a_block_is_checked_as_the_recipe_checks_it_with_its_defaults():
    assert check_block("budget", {}) is None and check_block("budget", None) is None
    assert check_block("budget", {"minutes": 10}).schedule == "linear"
    assert check_block("optimizer", {"momentum": 0.9}).name == "sgd"  # sgd when `name` is left out
    cosine = check_block("schedule", {"name": "cosine", "peak_lr": 0.1})
    assert (cosine.warmup_epochs, cosine.final_lr_fraction) == (0, 0.0)
    assert check_block("schedule", {"name": "triangular", "peak_lr": 1.0}).peak_fraction == 0.25
    assert check_block("augmentation", {"pad_crop": 4}).pad_mode == "constant"
    assert check_block("distribute", {"strategy": "mirrored"}).scale == "linear"
    with pytest.raises(RecipeError, match=r"^schedule\.name is missing: it must be cosine, piecewise"):
        check_block("schedule", {"peak_lr": 0.1})
    with pytest.raises(RecipeError, match=r"^fit\.budget\.hours is unknown"):
        check_block("budget", {"hours": 1}, where="fit.budget")


@pytest.mark.parametrize(
    ("name", "optimizer"),
    [("sgd", keras.optimizers.SGD), ("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW)],
)
def test_each_optimizer_option_is_a_keras_option_with_keras_default(name, optimizer):
    keras_parameters = inspect.signature(optimizer).parameters
    for key, field in schema.OPTIMIZERS[name].model_fields.items():
        if key == "name":
            continue
        assert key in keras_parameters, (name, key)
        assert field.default == keras_parameters[key].default, (name, key)


def test_early_stopping_options_are_keras_with_convbench_defaults_for_two():
    keras_parameters = inspect.signature(keras.callbacks.EarlyStopping).parameters
    ours = {"restore_best_weights": True, "verbose": 1}  # convbench's defaults, documented in the field
    for key, field in schema.EarlyStopping.model_fields.items():
        assert key in keras_parameters, key
        assert field.default == ours.get(key, keras_parameters[key].default), key


def test_every_key_the_code_reads_from_a_recipe_is_in_the_schema():
    read = set()
    for path in (PROJECT / "src" / "convbench").rglob("*.py"):
        read |= set(re.findall(r"\brecipe(?:\.get\(|\[)\"(\w+)\"", path.read_text()))
    assert read and read <= set(schema.Recipe.model_fields), read - set(schema.Recipe.model_fields)


# ---- the reference ---------------------------------------------------------------------------------


def test_docs_recipe_md_is_written_from_the_schema():
    committed = (PROJECT / schema.DOCS).read_text()
    assert committed == schema.markdown(), (
        f"{schema.DOCS} differs from the schema: python -m convbench.training.recipe > {schema.DOCS}"
    )
    for name in schema.Recipe.model_fields:
        assert f"| `{name}` |" in committed, name


def test_parameters_training_points_to_the_reference():
    header = (PROJECT / "conf" / "base" / "parameters_training.yml").read_text().split("\n_common")[0]
    assert schema.DOCS in header and "Precedence, lowest first" in header
