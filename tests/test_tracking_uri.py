"""Which MLflow tracking store a `kedro run` uses: `MLFLOW_TRACKING_URI` where set, else the embedded
`<project>/mlflow.db`; a URI in conf/local/mlflow.yml wins over both (conf/base/mlflow.yml, convbench.tracking.tracking_uri)."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig
from kedro_project import kedro_env

from convbench.config import ConvbenchConfigLoader
from convbench.hooks.resolvers import ProjectPathResolverHook
from convbench.settings import CONFIG_LOADER_ARGS

CONF = Path(__file__).resolve().parents[1] / "conf"
SERVER = "http://127.0.0.1:5999"


@pytest.fixture
def project(tmp_path):
    """A project folder with a copy of conf/ (no local settings), its resolvers registered as `kedro run` does."""
    shutil.copytree(CONF, tmp_path / "conf")
    for leftover in (tmp_path / "conf" / "local").glob("*.yml"):
        leftover.unlink()
    ProjectPathResolverHook().after_context_created(SimpleNamespace(project_path=tmp_path))
    return tmp_path


def tracking_uri(project: Path, env: str = "local") -> str:
    """The tracking URI kedro-mlflow is given, as it reads mlflow.yml (pattern and all)."""
    loader = ConvbenchConfigLoader(str(project / "conf"), env=env, **CONFIG_LOADER_ARGS)
    loader.config_patterns.update({"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]})
    return KedroMlflowConfig.model_validate(loader["mlflow"]).server.mlflow_tracking_uri


def test_without_the_variable_runs_go_to_the_projects_own_sqlite_store(project, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(project) == f"sqlite:///{project.resolve()}/mlflow.db"
    assert tracking_uri(project, env="smoke") == f"sqlite:///{project.resolve()}/mlflow.db"


def test_the_variable_wins_over_the_default(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", SERVER)
    assert tracking_uri(project) == SERVER
    assert tracking_uri(project, env="smoke") == SERVER


def test_an_empty_variable_counts_as_unset(project, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    assert tracking_uri(project) == f"sqlite:///{project.resolve()}/mlflow.db"


def test_a_uri_in_conf_local_wins_over_the_variable(project, monkeypatch):
    (project / "conf/local/mlflow.yml").write_text("server:\n  mlflow_tracking_uri: http://team-server:5000\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", SERVER)
    assert tracking_uri(project) == "http://team-server:5000"


def test_kedro_children_of_the_tests_inherit_no_tracking_uri_unless_given_one(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", SERVER)
    monkeypatch.setenv("CONVBENCH_SOMETHING", "kept")
    assert "MLFLOW_TRACKING_URI" not in kedro_env()
    assert kedro_env()["CONVBENCH_SOMETHING"] == "kept"
    assert kedro_env({"MLFLOW_TRACKING_URI": SERVER})["MLFLOW_TRACKING_URI"] == SERVER
