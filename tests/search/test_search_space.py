"""Search spaces: parsing and its errors, Optuna's sampling of them, and the recipe a trial trains with."""

import optuna
import pytest
import yaml

from convbench.merging import deep_merge
from convbench.search.space import (
    Dimension,
    as_overrides,
    as_params_option,
    parse_space,
    with_peak_learning_rate,
    with_values,
)

RECIPE = {
    "model": {"depth": 20, "weight_decay": 5e-4},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "schedule": {"name": "cosine", "peak_lr": 0.1, "warmup_epochs": 1},
    "batch_size": 128,
    "label_smoothing": 0.0,
}


def test_every_kind_of_range_parses_into_optunas_terms():
    dimensions = parse_space(
        "resnet",
        {
            "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
            "model.depth": {"choices": [20, 32]},
            "model.blocks": {"low": 1, "high": 4, "type": "int"},
            "label_smoothing": {"low": 0.0, "high": 0.2, "step": 0.05},
        },
    )
    assert dimensions == [
        Dimension("learning_rate", "float", low=0.01, high=0.3, log=True),
        Dimension("model.depth", "categorical", choices=(20, 32)),
        Dimension("model.blocks", "int", low=1.0, high=4.0),
        Dimension("label_smoothing", "float", low=0.0, high=0.2, step=0.05),
    ]


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (None, r"No search space for 'resnet': add `search.spaces.resnet`"),
        ({"batch_size": [64, 128]}, r"search.spaces.resnet.batch_size must be \{low, high\}"),
        ({"batch_size": {"choices": []}}, r"choices must be a non-empty list"),
        ({"learning_rate": {"low": 0.1}}, r"needs `low` and `high`"),
        ({"learning_rate": {"low": 0.3, "high": 0.1}}, r"low \(0.3\) must be below high \(0.1\)"),
        ({"learning_rate": {"low": 0.0, "high": 0.1, "log": True}}, r"a log scale needs low > 0"),
        ({"learning_rate": {"low": 0.1, "high": 1.0, "log": True, "step": 0.1}}, r"either `log` or `step`"),
        ({"model.depth": {"low": 1, "high": 3, "type": "double"}}, r"type must be float or int"),
        ({"model.depth": {"low": 1, "high": 3, "scale": "log"}}, r"unknown option\(s\) \['scale'\]"),
    ],
)
def test_a_bad_space_names_the_key_and_what_is_wrong(space, message):
    with pytest.raises(ValueError, match=message):
        parse_space("resnet", space)


def test_sampled_values_stay_in_their_ranges_and_are_recorded_under_the_recipe_key():
    dimensions = parse_space(
        "resnet",
        {
            "learning_rate": {"low": 0.01, "high": 0.3, "log": True},
            "model.depth": {"choices": [20, 32]},
            "model.blocks": {"low": 1, "high": 4, "type": "int"},
        },
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        values = {dimension.key: dimension.suggest(trial) for dimension in dimensions}
        assert 0.01 <= values["learning_rate"] <= 0.3
        assert values["model.depth"] in (20, 32)
        assert isinstance(values["model.blocks"], int) and 1 <= values["model.blocks"] <= 4
        assert trial.params == values
        study.tell(trial, 0.0)


def test_values_land_at_their_dotted_keys_without_changing_the_recipe():
    merged = with_values(RECIPE, {"model.depth": 32, "batch_size": 64, "learning_rate": 0.05})
    assert merged["model"] == {"depth": 32, "weight_decay": 5e-4}
    assert merged["batch_size"] == 64
    assert merged["schedule"] == {"name": "cosine", "peak_lr": 0.05, "warmup_epochs": 1}
    assert RECIPE["model"]["depth"] == 20 and RECIPE["schedule"]["peak_lr"] == 0.1


def test_a_key_under_a_block_the_recipe_lacks_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"'model.stem.width': the recipe has no block 'model.stem'"):
        with_values(RECIPE, {"model.stem.width": 2})


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ({"name": "cosine", "peak_lr": 0.1}, {"name": "cosine", "peak_lr": 0.02}),
        ({"name": "triangular", "peak_lr": 1.5}, {"name": "triangular", "peak_lr": 0.02}),
        ({"name": "constant", "lr": 1e-3}, {"name": "constant", "lr": 0.02}),
        (  # resnet_v2: a warm-up value first, the peak second
            {"name": "piecewise", "boundaries": [1, 82], "values": [0.01, 0.1, 0.001]},
            {"name": "piecewise", "boundaries": [1, 82], "values": [0.002, 0.02, 0.0002]},
        ),
    ],
)
def test_learning_rate_sets_the_peak_of_any_schedule(schedule, expected):
    result = with_peak_learning_rate(schedule, 0.02)
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value)


def test_learning_rate_of_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="cannot be searched for a schedule named 'exponential'"):
        with_peak_learning_rate({"name": "exponential", "initial": 0.1}, 0.02)


def test_the_conf_local_file_and_the_params_option_give_back_the_trials_recipe():
    values = {"model.depth": 32, "label_smoothing": 0.1, "learning_rate": 0.05}
    overrides = as_overrides(values, "resnet", RECIPE)
    assert yaml.safe_load(yaml.safe_dump(overrides)) == overrides
    assert deep_merge(RECIPE, overrides["training"]["resnet"]) == with_values(RECIPE, values)
    option = as_params_option(values, "resnet", RECIPE)
    assert option.startswith("--params=")
    pairs = dict(pair.split("=", 1) for pair in option.removeprefix("--params=").split(","))
    assert pairs == {
        "training.resnet.model.depth": "32",
        "training.resnet.label_smoothing": "0.1",
        "training.resnet.schedule.peak_lr": "0.05",
    }
