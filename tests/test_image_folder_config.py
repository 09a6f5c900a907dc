"""Declaring a folder of images in conf/: it becomes a dataset with its defaults, pipelines and checks."""

import pytest

from convbench import dataset_specs
from convbench.config import ConvbenchConfigLoader, declared_image_folders
from convbench.dataset_specs import DATASETS, IMAGE_FOLDER_DEFAULTS, IMAGE_FOLDER_VAL_SHARE, dataset_of
from convbench.pipelines import ingestion


@pytest.fixture(autouse=True)
def restored_datasets():
    """Declarations add to `DATASETS`; each test leaves it as it found it."""
    saved = dict(DATASETS)
    yield
    DATASETS.clear()
    DATASETS.update(saved)


def conf(tmp_path, files: dict[str, str]):
    for relative, text in files.items():
        path = tmp_path / "conf" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for env in ("base", "local"):
        (tmp_path / "conf" / env).mkdir(parents=True, exist_ok=True)
    return tmp_path / "conf"


def test_declarations_in_any_env_become_datasets_and_nothing_else_does(tmp_path):
    source = conf(
        tmp_path,
        {
            "base/parameters_pets.yml": "ingestion:\n  pets: {format: image_folder, path: data/01_raw/pets}\n",
            "local/parameters.yml": "ingestion:\n  my_photos:\n    format: image_folder\n    path: /photos\n",
            "local/catalog.yml": "ingestion:\n  not_params: {format: image_folder, path: x}\n",
            "smoke/parameters.yml": "ingestion:\n  cifar10: {source: {url: file:///x}}\n",
        },
    )
    assert sorted(declared_image_folders(source)) == ["my_photos", "pets"]
    assert DATASETS["pets"].source_format == "image_folder" and DATASETS["pets"].val_size == IMAGE_FOLDER_VAL_SHARE
    assert dataset_of("my_photos_resnet_search") == "my_photos" and dataset_of("pets") == "pets"
    assert "not_params" not in DATASETS


def test_the_loader_fills_in_the_defaults_and_the_source_the_card_names(tmp_path):
    source = conf(
        tmp_path,
        {
            "base/parameters.yml": "ingestion:\n  pets:\n    format: image_folder\n    path: data/pets\n    image_size: 48\n"
        },
    )
    parameters = ConvbenchConfigLoader(str(source), base_env="base", default_run_env="local")["parameters"]
    pets = parameters["ingestion"]["pets"]
    assert pets["image_size"] == 48  # the declaration wins over the defaults
    assert {key: pets[key] for key in IMAGE_FOLDER_DEFAULTS if key != "image_size"} == {
        key: value for key, value in IMAGE_FOLDER_DEFAULTS.items() if key != "image_size"
    }
    assert pets["source"]["destination"] == "data/pets" and pets["source"]["url"].startswith("file:///")
    assert parameters["preprocessing"]["pets"]["val_size"] == IMAGE_FOLDER_VAL_SHARE


def test_a_declaration_without_path_is_a_clear_error(tmp_path):
    source = conf(tmp_path, {"base/parameters.yml": "ingestion:\n  pets: {format: image_folder}\n"})
    with pytest.raises(ValueError, match=r"ingestion.pets declares an image folder without its `path`"):
        ConvbenchConfigLoader(str(source), base_env="base", default_run_env="local")["parameters"]


@pytest.mark.parametrize(
    ("name", "message"),
    [("cifar10", "is a built-in dataset"), ("My-Photos", "lower-case letters"), ("a.b", "lower-case letters")],
)
def test_a_declared_name_must_be_new_and_usable_in_pipeline_names(tmp_path, name, message):
    source = conf(tmp_path, {"base/parameters.yml": f"ingestion:\n  {name}: {{format: image_folder, path: x}}\n"})
    with pytest.raises(ValueError, match=message):
        declared_image_folders(source)


def test_the_ingestion_of_a_folder_reads_its_declared_parameters(tmp_path):
    dataset_specs.declare_image_folder("pets")
    pipeline = ingestion.create_pipeline("pets")
    assert set(pipeline.inputs()) == {
        f"params:ingestion.pets.{key}" for key in ("path", "image_size", "channels", "test_size", "seed", "max_corrupt")
    }
    assert "pets.image_folder_manifest" in pipeline.outputs()
