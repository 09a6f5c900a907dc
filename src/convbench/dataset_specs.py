"""Every dataset convbench knows, one `DatasetSpec` each: the one list that the pipelines, the
configuration loader and the hooks read.

A folder of your own images (one subfolder per class) needs no edit here: declare it in the
parameters, `ingestion.<name>: {format: image_folder, path: ...}` (conf/base or conf/local), and
`declare_image_folder` adds its spec when the project's configuration is read (see
`convbench.config.declared_image_folders` and docs/datasets.md, "Your own images").

Adding a dataset of another format takes three edits: a parser module in `convbench.data` (none if its raw format is
one convbench reads already), one entry in `DATASETS` below (`source_format="parser"` with
`parser="convbench.data.<module>:<function>"` for a new format), and its raw files
(`ingestion.<name>.source`: URL, checksum, destination) in conf/base/parameters_ingestion.yml.
See docs/datasets.md, "Adding a dataset".

This module imports nothing but the standard library, so hooks and `kedro --help` stay light.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

SourceFormat = Literal[
    "cifar_binary", "mnist_idx", "tiny_imagenet_zip", "fer2013_ferplus_csv", "image_folder", "parser"
]
"""The raw formats an ingestion template exists for (`convbench.pipelines.ingestion.pipeline.TEMPLATES`).

`image_folder` reads a folder of images declared in the parameters (`convbench.data.image_folder`).
`parser` is the generic one: download `ingestion.<name>.source` (one file, or several by name), then
call the spec's `parser` function on the local path(s) with `ingestion.<name>.options`.
"""

SMOKE_SUBSET = MappingProxyType({"train": 512, "val": 256, "test": 256})
"""Images per split in the smoke env for a dataset with few classes."""

DEFAULT_SEED = 42

DEFAULT_PIPELINE = "cifar10_resnet"
"""The main job: what `make run` and a bare `kedro run` (`__default__`) run."""


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class DatasetSpec:
    """What convbench needs to know about one dataset besides its raw files' URLs and checksums.

    Attributes:
        name: The dataset's name: pipelines `<name>_*`, namespace `<name>.*`, MLflow experiment.
        source_format: Which ingestion template parses its raw files.
        class_names_from: Where its class names come from, as the dataset card states it.
        smoke_subset: Images per split (`train`, `val`, `test`) in the smoke env. Required: a
            dataset without one would run at full size there.
        val_size: Images carved from the official training set for validation (or a share of it,
            below 1); None when the dataset has predefined splits (FERPlus' `Usage`).
        crowd_labelled: Whether it keeps crowd votes, labelled in preprocessing by
            `preprocessing.<name>.label_mode` (FERPlus), instead of one class per image.
        coarse_labels: Whether it also has coarse labels (CIFAR-100's 20 superclasses).
        recipe_overrides: What holds for every architecture trained on it, merged over the
            recipe below conf/local and --params (MNIST: no horizontal flips).
        parser: For `source_format="parser"`: "package.module:function", called as
            `function(raw_files, **options)` with the downloaded path (or `{name: path}` for several
            files); it returns `train_images`, `train_labels`, `test_images`, `test_labels` (uint8
            NHWC images, integer labels) and `class_names`.
    """

    name: str
    source_format: SourceFormat
    class_names_from: str
    smoke_subset: Mapping[str, int]
    val_size: int | float | None
    crowd_labelled: bool = False
    coarse_labels: bool = False
    recipe_overrides: Mapping[str, Any] = field(default_factory=dict)
    parser: str | None = None

    def __post_init__(self) -> None:
        if (self.source_format == "parser") != (self.parser is not None):
            raise ValueError(
                f"Dataset {self.name!r}: a parser ('module:function') is given exactly when source_format is "
                f"'parser'. Received: source_format={self.source_format!r}, parser={self.parser!r}"
            )
        if set(self.smoke_subset) != {"train", "val", "test"} or not all(
            isinstance(size, int) and size > 0 for size in self.smoke_subset.values()
        ):
            raise ValueError(
                f"Dataset {self.name!r}: smoke_subset must give a positive size for train, val and test. "
                f"Received: {dict(self.smoke_subset)}"
            )
        if self.source_format == "parser" and (self.crowd_labelled or self.coarse_labels):
            raise ValueError(
                f"Dataset {self.name!r}: the generic parser template gives images, labels and class names only; "
                "coarse or crowd labels need an ingestion template of their own (convbench.pipelines.ingestion). "
                f"Received: coarse_labels={self.coarse_labels}, crowd_labelled={self.crowd_labelled}"
            )
        if (self.val_size is None) != self.crowd_labelled:
            raise ValueError(
                f"Dataset {self.name!r}: val_size is None exactly for datasets with predefined splits "
                f"(crowd_labelled). Received: val_size={self.val_size}, crowd_labelled={self.crowd_labelled}"
            )
        object.__setattr__(self, "smoke_subset", _frozen(self.smoke_subset))
        object.__setattr__(self, "recipe_overrides", _frozen(self.recipe_overrides))

    def preprocessing_defaults(self) -> dict[str, Any]:
        """`preprocessing.<name>` before conf/ and --params change it: split sizes, seed, label mode."""
        defaults: dict[str, Any] = {"seed": DEFAULT_SEED, "subset": None}
        if self.val_size is not None:
            defaults["val_size"] = self.val_size
        if self.crowd_labelled:
            defaults["label_mode"] = "majority"
        return defaults


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="cifar10",
            source_format="cifar_binary",
            class_names_from="batches.meta.txt in the archive",
            smoke_subset=SMOKE_SUBSET,
            val_size=5000,
        ),
        DatasetSpec(
            name="cifar100",
            source_format="cifar_binary",
            class_names_from="fine_label_names.txt and coarse_label_names.txt in the archive",
            smoke_subset=SMOKE_SUBSET,
            val_size=5000,
            coarse_labels=True,
        ),
        DatasetSpec(
            name="mnist",
            source_format="mnist_idx",
            class_names_from="the digits 0-9",
            smoke_subset=SMOKE_SUBSET,
            val_size=5000,
            recipe_overrides={"augmentation": {"horizontal_flip": False}},  # digits are not mirror-symmetric
        ),
        DatasetSpec(
            name="tinyimagenet",
            source_format="tiny_imagenet_zip",
            class_names_from="wnids.txt and words.txt in the zip",
            smoke_subset={"train": 1000, "val": 400, "test": 400},  # 200 classes: a few images each
            val_size=10000,  # of the 100,000 training images; the official val set is the test split
        ),
        DatasetSpec(
            name="ferplus",
            source_format="fer2013_ferplus_csv",
            class_names_from="the 8 FERPlus emotions (fer2013new.csv's vote columns)",
            smoke_subset=SMOKE_SUBSET,
            val_size=None,  # Usage: Training -> train, PublicTest -> val, PrivateTest -> test
            crowd_labelled=True,
        ),
    )
}
"""Every dataset, in the order pipelines, docs and `kedro registry list` show them: the built-in ones,
then the image folders the project's parameters declare (`declare_image_folder`)."""


IMAGE_FOLDER = "image_folder"
"""`ingestion.<name>.format` of a folder of the user's own images."""

IMAGE_FOLDER_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {"image_size": 32, "channels": 3, "test_size": 0.2, "seed": DEFAULT_SEED, "max_corrupt": 0}
)
"""`ingestion.<name>` of an image-folder dataset under the user's declaration: the size every image
is resized to (a number or [height, width]), 3 (RGB) or 1 (grey) channels, the share (or count) of
train/ carved out as the test split when there is no test/ (seeded), and how many undecodable files
may be skipped."""

IMAGE_FOLDER_VAL_SHARE = 0.1
"""The share of an image folder's training images carved out for validation (`preprocessing.<name>.val_size`)."""

DATASET_NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
"""What a declared dataset may be called: it names pipelines, a namespace and an MLflow experiment."""


def image_folder_spec(name: str) -> DatasetSpec:
    """The spec of a folder of images declared as `ingestion.<name>: {format: image_folder, path: ...}`."""
    if not DATASET_NAME.fullmatch(name):
        raise ValueError(
            f"An image-folder dataset needs a name of lower-case letters, digits and single underscores "
            f"(it names pipelines such as <name>_resnet). Received: ingestion.{name}"
        )
    return DatasetSpec(
        name=name,
        source_format=IMAGE_FOLDER,
        class_names_from="the class folders under train/, sorted",
        smoke_subset=SMOKE_SUBSET,  # at most: a smaller folder is kept whole
        val_size=IMAGE_FOLDER_VAL_SHARE,
    )


def declare_image_folder(name: str) -> DatasetSpec:
    """Adds (or keeps) the image-folder dataset `name` to `DATASETS`, where every pipeline, hook and
    the configuration loader find it.

    Raises:
        ValueError: `name` is a built-in dataset's, or not a valid dataset name.
    """
    existing = DATASETS.get(name)
    if existing is not None and existing.source_format != IMAGE_FOLDER:
        raise ValueError(
            f"ingestion.{name} declares an image folder, but {name!r} is a built-in dataset: pick another name"
        )
    spec = image_folder_spec(name)
    DATASETS[name] = spec
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The spec of dataset `name`; a clear error lists the known names otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}. Known datasets: {', '.join(DATASETS)}") from None


def dataset_of(pipeline_name: str) -> str | None:
    """The dataset a pipeline name belongs to (`cifar10_resnet`, `cifar10` -> `cifar10`), if any."""
    if pipeline_name == "__default__":
        pipeline_name = DEFAULT_PIPELINE
    for name in sorted(DATASETS, key=len, reverse=True):
        if pipeline_name == name or pipeline_name.startswith(f"{name}_"):
            return name
    return None
