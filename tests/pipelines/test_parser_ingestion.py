"""The generic ingestion template: a dataset in a new raw format needs only its own parser function."""

import json

import numpy as np
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from convbench import dataset_specs
from convbench.dataset_specs import DatasetSpec
from convbench.pipelines import ingestion

CLASSES = ["circle", "square"]


def parse_toy(raw_file, *, size):
    """A toy raw format: a JSON list of {"split", "label", "value"} records, one flat image each."""
    records = json.loads(raw_file.read_text())
    arrays = {}
    for split in ("train", "test"):
        rows = [record for record in records if record["split"] == split]
        arrays[f"{split}_images"] = np.array([[[[r["value"]]] * size] * size for r in rows], dtype=np.uint8)
        arrays[f"{split}_labels"] = np.array([r["label"] for r in rows], dtype=np.int64)
    return {**arrays, "class_names": CLASSES}


def parse_without_labels(raw_file, *, size):
    return {name: value for name, value in parse_toy(raw_file, size=size).items() if not name.endswith("_labels")}


@pytest.fixture
def toy_dataset(monkeypatch, tmp_path):
    """A `toy` dataset spec (registered for this test) whose file is served by a file:// URL."""
    raw = tmp_path / "mirror" / "toy.json"
    raw.parent.mkdir()
    records = [{"split": "train", "label": i % 2, "value": 10 * i} for i in range(6)]
    records += [{"split": "test", "label": 1, "value": 200}]
    raw.write_text(json.dumps(records))

    def register(parser: str) -> dict:
        spec = DatasetSpec(
            name="toy",
            source_format="parser",
            parser=parser,
            class_names_from="the parser",
            smoke_subset={"train": 2, "val": 2, "test": 1},
            val_size=2,
        )
        monkeypatch.setitem(dataset_specs.DATASETS, "toy", spec)
        return {
            "params:ingestion.toy.source": {
                "url": raw.as_uri(),
                "known_hash": None,
                "destination": str(tmp_path / "data" / "01_raw" / "toy.json"),
            },
            "params:ingestion.toy.options": {"size": 3},
        }

    return register


def run_ingestion(params: dict) -> DataCatalog:
    pipeline = ingestion.create_pipeline("toy")
    catalog = DataCatalog({name: MemoryDataset(value) for name, value in params.items()})
    for name in pipeline.outputs():
        catalog[name] = MemoryDataset()
    SequentialRunner().run(pipeline, catalog)
    return catalog


def test_a_new_format_is_downloaded_and_parsed_by_the_parser_its_spec_names(toy_dataset, tmp_path):
    catalog = run_ingestion(toy_dataset(f"{__name__}:parse_toy"))
    images = catalog.load("toy.train_images")
    assert images.shape == (6, 3, 3, 1) and images.dtype == np.uint8 and images[5, 2, 2, 0] == 50
    assert catalog.load("toy.train_labels").tolist() == [0, 1, 0, 1, 0, 1]
    assert catalog.load("toy.test_images").shape == (1, 3, 3, 1) and catalog.load("toy.class_names") == CLASSES
    assert (tmp_path / "data" / "01_raw" / "toy.json").exists()  # fetched to its destination


def test_a_parser_that_returns_too_little_is_named(toy_dataset):
    with pytest.raises(ValueError, match=r"parse_without_labels returned no train_labels, test_labels"):
        run_ingestion(toy_dataset(f"{__name__}:parse_without_labels"))


def test_a_parser_that_cannot_be_imported_is_named(toy_dataset):
    with pytest.raises(ValueError, match=r"Cannot import the dataset parser 'convbench.data.nowhere:parse'"):
        run_ingestion(toy_dataset("convbench.data.nowhere:parse"))


def test_a_parser_is_named_exactly_for_the_parser_format():
    with pytest.raises(ValueError, match=r"a parser .* is given exactly when source_format is .parser."):
        DatasetSpec(
            name="toy",
            source_format="parser",
            class_names_from="x",
            smoke_subset={"train": 1, "val": 1, "test": 1},
            val_size=1,
        )


@pytest.mark.parametrize("labels", [{"coarse_labels": True}, {"crowd_labelled": True, "val_size": None}])
def test_a_parser_dataset_cannot_claim_labels_the_parser_template_does_not_give(labels):
    spec = {"name": "toy", "source_format": "parser", "parser": f"{__name__}:parse_toy", "class_names_from": "x"}
    spec |= {"smoke_subset": {"train": 2, "val": 2, "test": 1}, "val_size": 2} | labels
    with pytest.raises(ValueError, match=r"Dataset 'toy': the generic parser template gives images, labels"):
        DatasetSpec(**spec)
