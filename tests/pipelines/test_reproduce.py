"""The reproduction report from fixture MLflow runs: verdicts, differences, budgets, and runs that never count."""

import math

import mlflow
import pytest

from convbench.pipelines.reproduce.nodes import (
    BUDGET_TAG,
    CLAIM_TAG,
    MEASURED_METRIC,
    PARAMETERS,
    RECIPE_TAG,
    build_reproduction_report,
    claim_recipe,
    earlier_results,
    recipe_hash,
)
from convbench.tracking import ENV_TAG

CLAIMS = {
    "good": {"dataset": "cifar10", "architecture": "resnet", "metric": "test_accuracy", "published": 0.90,
             "source": "paper A"},
    "short": {"dataset": "cifar10", "architecture": "resnet", "metric": "test_accuracy", "published": 0.95,
              "source": "paper B", "recipe": {"epochs": 7}},
    "long": {"dataset": "cifar10", "architecture": "resnet", "metric": "test_accuracy", "published": 0.91,
             "source": "paper C", "recipe": {"epochs": 164}, "hours_here": 4},
    "transfer": {"dataset": "cifar10", "architecture": "mobilenet_v2_imagenet", "metric": "val_accuracy",
                 "published": 0.76, "source": "course"},
    "fresh": {"dataset": "cifar10", "architecture": "resnet", "metric": "test_accuracy", "published": 0.5,
              "source": "paper D", "recipe": {"epochs": 2}},
}  # fmt: skip
RECIPE = {
    "epochs": 3,
    "batch_size": 128,
    "eval_batch_size": 256,
    "model": {},
    "optimizer": {"name": "sgd"},
    "schedule": {"name": "constant", "lr": 0.1},
    "seed": 0,
}
PARAMS = {
    "claims": CLAIMS,
    "training": {
        "resnet": RECIPE,
        "mobilenet_v2_imagenet": {**RECIPE, "model": {"weights": "imagenet", "weights_file": "/nowhere/weights.h5"}},
    },
    "recipe_overrides": {"cifar10": {}},
    "run_recipe_settings": {},
    "reproduce": {"ui_url": "http://mlflow.example:5000"},
    "preprocessing": {"cifar10": {}},
}


def claim_run(claim: str, measured: float, *, status="FINISHED", env="base", budget="recipe", recipe=None) -> str:
    from convbench.claims import check_claim

    resolved = recipe or claim_recipe(check_claim(claim, CLAIMS[claim]), PARAMS)
    tags = {CLAIM_TAG: claim, RECIPE_TAG: recipe_hash(resolved), BUDGET_TAG: budget, ENV_TAG: env}
    with mlflow.start_run(run_name=f"claim_{claim}", nested=True, tags=tags) as run:
        mlflow.log_metrics({MEASURED_METRIC: measured, "epochs": 3, "training_minutes": 12.5})
    if status != "FINISHED":
        mlflow.MlflowClient().set_terminated(run.info.run_id, status=status)
    return run.info.run_id


@pytest.fixture
def report(mlflow_run):
    mlflow.set_tag(ENV_TAG, "base")
    good = claim_run("good", 0.895)  # 0.5 points under, within the default tolerance of 1 point
    claim_run("good", 0.99, status="KILLED")  # later and better, but killed: never counts
    claim_run("good", 0.20, env="smoke")  # a smoke run never counts in a real report
    claim_run("good", 0.99, recipe={**RECIPE, "epochs": 999})  # another recipe: not this claim's
    claim_run("short", 0.90)
    claim_run("long", 0.80, budget="60 min")
    table, markdown, figure = build_reproduction_report(*(PARAMS[name] for name in PARAMETERS))
    return table.set_index(["claim", "budget"]), markdown, figure, good


def test_a_finished_run_within_tolerance_reproduces_and_links_its_run(report):
    table, _, _, good = report
    row = table.loc[("good", "recipe")]
    assert row["verdict"] == "reproduced" and row["measured"] == pytest.approx(0.895)
    assert row["difference"] == pytest.approx(-0.005)
    assert row["run"].startswith("http://mlflow.example:5000/#/experiments/") and row["run"].endswith(good)


def test_a_gap_beyond_tolerance_is_not_reproduced_with_the_gap(report):
    row = report[0].loc[("short", "recipe")]
    assert row["verdict"] == "not reproduced" and row["difference"] == pytest.approx(-0.05)


def test_a_budgeted_run_gets_its_own_row_and_the_long_full_recipe_says_what_it_needs(report):
    table = report[0]
    assert table.loc[("long", "60 min"), "verdict"] == "not reproduced"
    assert (
        table.loc[("long", "60 min"), "command"]
        == "kedro run --pipelines=reproduce_long --params=reproduce.budget_minutes=60"
    )
    full = table.loc[("long", "recipe")]
    assert full["verdict"] == "not run" and math.isnan(full["measured"])
    assert "needs about 4 h" in full["why"] and full["command"] == "kedro run --pipelines=reproduce_long"


def test_claims_that_cannot_run_or_have_not_say_why(report):
    table = report[0]
    assert table.loc[("transfer", "recipe"), "verdict"] == "not run"
    why = table.loc[("transfer", "recipe"), "why"]
    assert "weights" in why and "/nowhere/weights.h5" in why and "Download" not in why  # the file, not the how-to
    assert table.loc[("fresh", "recipe"), "why"] == "no finished run of this recipe yet"
    assert len(table) == 6  # five claims, one of them with a budgeted row too


def test_the_markdown_counts_the_verdicts_and_the_figure_has_a_bar_per_row(report):
    _, markdown, figure, _ = report
    assert markdown.startswith("Claims: 1 reproduced, 2 not reproduced, 3 not run.")
    assert "| good | test_accuracy | 90.00% | 89.50% | -0.50 | reproduced |" in markdown
    assert len(figure.axes[0].patches) == 6


def test_this_runs_result_wins_over_earlier_runs(mlflow_run):
    mlflow.set_tag(ENV_TAG, "base")
    claim_run("short", 0.90)
    current = {"claim": "short", "status": "measured", "run_id": "abc", "experiment_id": "1", "measured": 0.96,
               "budget": "recipe", "epochs": 7, "training_minutes": 1.0, "machine": "m"}  # fmt: skip
    table, _, _ = build_reproduction_report(*(PARAMS[name] for name in PARAMETERS), current)
    row = table.set_index(["claim", "budget"]).loc[("short", "recipe")]
    assert row["verdict"] == "reproduced" and row["measured"] == pytest.approx(0.96)


def test_a_label_mode_claim_is_blamed_on_this_runs_label_mode_only_when_this_run_tried_it(mlflow_run):
    mlflow.set_tag(ENV_TAG, "base")
    claims = {
        label_mode: {"dataset": "ferplus", "architecture": "resnet", "metric": "test_accuracy", "published": 0.84,
                     "source": "paper E", "label_mode": label_mode, "hours_here": 23}
        for label_mode in ("majority", "probability")
    }  # fmt: skip
    params = {**PARAMS, "claims": claims, "preprocessing": {"ferplus": {"label_mode": "majority"}}}
    tried = {"claim": "probability", "status": "not run", "budget": "recipe",
             "reason": "trained with label mode probability, this run prepared ferplus with majority: add ..."}  # fmt: skip

    outside, _, _ = build_reproduction_report(*(params[name] for name in PARAMETERS))
    inside, _, _ = build_reproduction_report(*(params[name] for name in PARAMETERS), tried)

    outside, inside = outside.set_index("claim")["why"], inside.set_index("claim")["why"]
    assert (
        outside["probability"] == outside["majority"] == "not run here: needs about 23 h of training on the 2-core CPU"
    )
    assert inside["probability"] == tried["reason"]


def earlier_report(tmp_path, *rows: str) -> str:
    """An earlier reproduction.csv with the report's columns that `earlier_results` reads."""
    path = tmp_path / "reproduction.csv"
    path.write_text("claim,measured,verdict,budget,epochs,training_minutes,machine,run,why\n" + "\n".join(rows) + "\n")
    return str(path)


def test_an_earlier_reports_measured_rows_fill_what_this_store_has_not_run(mlflow_run, tmp_path):
    mlflow.set_tag(ENV_TAG, "base")
    claim_run("good", 0.895)
    earlier = earlier_report(
        tmp_path,
        "good,0.50,not reproduced,recipe,3,1.0,old box,http://old:5000/#/experiments/2/runs/aaa,",  # MLflow's wins
        "long,0.92,reproduced,60 min,41,65.3,old box,http://old:5000/#/experiments/2/runs/bbb,old why",
        "fresh,,not run,recipe,2,,,,no finished run of this recipe yet",  # nothing to carry
        "short,0.949,not reproduced,recipe,7,3.5,old box,,",  # the verdict is the claim's today (tolerance 1 point)
        "gone,0.9,reproduced,recipe,3,1.0,old box,,",  # a claim no longer declared: left out
    )
    params = {**PARAMS, "reproduce": {**PARAMS["reproduce"], "earlier_report": earlier}}
    table, markdown, _ = build_reproduction_report(*(params[name] for name in PARAMETERS))
    table = table.set_index(["claim", "budget"])
    assert table.loc[("good", "recipe"), "measured"] == pytest.approx(0.895), "a run in this store wins"
    carried = table.loc[("long", "60 min")]
    assert carried["measured"] == pytest.approx(0.92) and carried["verdict"] == "reproduced"
    assert carried["epochs"] == 41 and carried["training_minutes"] == pytest.approx(65.3)
    assert carried["machine"] == "old box" and carried["run"] == "http://old:5000/#/experiments/2/runs/bbb"
    assert carried["why"] == f"carried over from {earlier}: its MLflow run is not in this store"
    assert table.loc[("long", "recipe"), "verdict"] == "not run", "the full recipe still needs its hours"
    assert table.loc[("short", "recipe"), "verdict"] == "reproduced"
    assert table.loc[("fresh", "recipe"), "verdict"] == "not run"
    assert "gone" not in table.index.get_level_values("claim")
    assert markdown.startswith("Claims: 3 reproduced, 0 not reproduced, 3 not run.")


def test_an_earlier_report_that_is_missing_or_malformed_is_refused_with_its_file_and_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"reproduce\.earlier_report: no file at .*nowhere\.csv"):
        earlier_results(tmp_path / "nowhere.csv")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("claim,measured\ngood,0.9\n")
    with pytest.raises(ValueError, match=r"wrong.csv: not a reproduction report, it lacks the columns \['verdict'"):
        earlier_results(wrong)
    blank = earlier_report(tmp_path, "good,0.9,reproduced,recipe,3,1.0,m,,", "short,,reproduced,recipe,7,1.0,m,,")
    with pytest.raises(
        ValueError, match=r"reproduction\.csv, line 3: claim 'short' is 'reproduced' but has no measured"
    ):
        earlier_results(blank)
    assert earlier_results(None) == {}
