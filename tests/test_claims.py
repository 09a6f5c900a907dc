"""The claims file: every claim of conf/base is valid, and a bad one is refused naming the claim."""

from pathlib import Path

import pytest
import yaml

from convbench.claims import CLAIM_METRICS, check_claim, check_claims, declared_claims

PROJECT = Path(__file__).resolve().parents[1]
GOOD = {"dataset": "cifar10", "architecture": "resnet", "metric": "test_accuracy", "published": 0.91, "source": "x"}


def shipped_claims() -> dict:
    return yaml.safe_load((PROJECT / "conf/base/parameters_reproduce.yml").read_text())["claims"]


def test_every_shipped_claim_is_valid_and_every_course_result_is_there():
    claims = check_claims(shipped_claims())
    assert {"mnist_mlp", "mnist_resmlp_shallow", "mnist_resmlp_10", "mnist_resmlp_13", "cifar10_mlp",
            "cifar10_alexnet", "cifar10_cnn", "cifar10_preact", "cifar100_top5", "tiny_cnn", "tiny_mobilenet",
            "cifar10_transfer", "ferplus_vgg13_majority", "ferplus_vgg13_probability", "cifar10_resnet20",
            "cifar10_airbench"} <= set(claims)  # fmt: skip
    assert claims["cifar100_top5"].metric == "test_top5_accuracy" and claims["tiny_cnn"].metric == "val_accuracy"
    assert claims["ferplus_vgg13_probability"].label_mode == "probability"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "resnet9000"}, r"Claim 'mine' \(claims.mine\): unknown architecture 'resnet9000'"),
        ({"dataset": "svhn"}, r"Claim 'mine' \(claims.mine\): unknown dataset 'svhn'"),
        ({"metric": "test_f1"}, r"Claim 'mine' \(claims.mine\): unknown metric 'test_f1'"),
        ({"published": 91.25}, r"Claim 'mine' .*published is a fraction in \[0, 1\]"),
        ({"epochs": 3}, r"Claim 'mine' .*unknown keys epochs"),
        ({"source": None}, r"Claim 'mine' .*missing source"),
        ({"label_mode": "majority"}, r"Claim 'mine' .*label_mode applies to crowd-labelled datasets only"),
        ({"recipe": [1, 2]}, r"Claim 'mine' .*recipe is a mapping"),
    ],
)
def test_a_bad_claim_is_refused_with_its_name_and_what_was_expected(change, message):
    with pytest.raises(ValueError, match=message):
        check_claim("mine", {**GOOD, **change})


def test_a_claim_id_must_be_a_pipeline_name():
    with pytest.raises(ValueError, match="lower case letters, digits and underscores"):
        check_claim("My-Claim", GOOD)
    assert set(CLAIM_METRICS) >= {"test_accuracy", "val_accuracy"}


def test_claims_of_every_env_become_pipelines_and_a_users_own_claim_joins_them(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "local").mkdir()
    (tmp_path / "base" / "parameters_reproduce.yml").write_text(yaml.safe_dump({"claims": {"a": GOOD}}))
    mine = {**GOOD, "dataset": "mnist", "architecture": "mlp"}
    (tmp_path / "local" / "parameters.yml").write_text(yaml.safe_dump({"claims": {"mine": mine, "Bad-Id": GOOD}}))
    assert declared_claims(tmp_path) == {"a": "cifar10", "mine": "mnist"}


def test_every_claim_pipeline_logs_to_the_reproduce_experiment():
    from convbench.hooks.mlflow_runs import experiment_of

    assert experiment_of("reproduce") == experiment_of("reproduce_mnist_mlp") == "reproduce"
    assert experiment_of("cifar10_resnet") == "cifar10" and experiment_of("predict") == "predict"
