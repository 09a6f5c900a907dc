"""The recipe settings that the accuracy benchmarks take on their command line resolve as `kedro run --params` does."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_recipe_tries import parse_try
from bench_time_to_accuracy import DATASET, recipe_setting, run_parameters

from convbench.config import RUN_RECIPE_SETTINGS
from convbench.pipelines.training.nodes import resolve_recipe


def airbench_recipe(parameters: dict) -> dict:
    return resolve_recipe(
        parameters["training"]["airbench"],
        parameters["recipe_overrides"][DATASET],
        parameters[RUN_RECIPE_SETTINGS]["airbench"],
    )


def test_a_nested_setting_changes_one_key_and_keeps_its_siblings():
    plain = airbench_recipe(run_parameters("airbench", 0, None, None, "local"))
    settings = {"augmentation.horizontal_flip": "alternating", "model.whiten_bias_epochs": 3}

    tried = airbench_recipe(run_parameters("airbench", 3, None, 10.0, "local", settings))

    assert tried["augmentation"] == {**plain["augmentation"], "horizontal_flip": "alternating"}
    assert tried["model"] == {**plain["model"], "whiten_bias_epochs": 3}
    assert tried["seed"] == 3
    assert tried["budget"]["minutes"] == 10.0
    assert plain["augmentation"]["horizontal_flip"] is True  # the recipe itself is untouched


def test_values_are_read_as_yaml():
    assert recipe_setting("mixed_precision=bfloat16") == ("mixed_precision", "bfloat16")
    assert recipe_setting("model.whiten_bias_epochs=3") == ("model.whiten_bias_epochs", 3)
    assert recipe_setting("mixed_precision=null") == ("mixed_precision", None)
    assert recipe_setting("model.widths=[16, 32, 32]") == ("model.widths", [16, 32, 32])


@pytest.mark.parametrize("text", ["mixed_precision", "=bfloat16", ""])
def test_a_setting_without_key_and_value_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        recipe_setting(text)


def test_a_try_is_a_name_and_its_settings():
    assert parse_try("baseline") == ("baseline", {})
    assert parse_try("bf16+flips:mixed_precision=bfloat16,augmentation.horizontal_flip=alternating") == (
        "bf16+flips",
        {"mixed_precision": "bfloat16", "augmentation.horizontal_flip": "alternating"},
    )
    with pytest.raises(argparse.ArgumentTypeError, match="NAME"):
        parse_try(":mixed_precision=bfloat16")
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        parse_try("x:bfloat16")
