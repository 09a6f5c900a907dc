"""Seeded stratified splits, channel statistics and the dataset card."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pooch

from convbench.data import fer2013, ferplus
from convbench.normalization import statistics_checksum

logger = logging.getLogger(__name__)

STATS_CHUNK = 4096  # images per chunk when summing pixels, bounds the int64 temporaries


def stratified_sample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `size` elements drawn so every class keeps its share (largest remainder).

    Args:
        labels: Integer class of each element.
        size: How many to draw, at most `len(labels)`.
        rng: Source of randomness.

    Returns:
        Sorted int64 indices into `labels`.
    """
    if not 0 <= size <= len(labels):
        raise ValueError(f"Cannot draw {size} of {len(labels)} elements")
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (size / len(labels))
    quota = np.floor(exact).astype(np.int64)
    shortfall = size - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:shortfall]] += 1
    chosen = [
        rng.choice(np.flatnonzero(labels == cls), size=int(n), replace=False) for cls, n in zip(classes, quota) if n
    ]
    return np.sort(np.concatenate(chosen)) if chosen else np.empty(0, dtype=np.int64)


def resolve_size(size: float | int, total: int, name: str) -> int:
    """An image count from `size`: a share of `total` (0 < size < 1, rounded) or a count itself.

    Raises:
        ValueError: `size` is neither a share below 1 nor a whole count from 0 to `total`.
    """
    if isinstance(size, float) and 0 < size < 1:
        return round(size * total)
    if float(size) != int(size) or not 0 <= int(size) <= total:
        raise ValueError(
            f"{name} must be a share (0 < {name} < 1) or a count of at most {total:,} images. Received: {size!r}"
        )
    return int(size)


def split_dataset(
    train_labels: np.ndarray, test_labels: np.ndarray, split: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation indices carved from the official train set, and the test indices.

    Args:
        train_labels: Labels of the official training set.
        test_labels: Labels of the official test set (kept whole unless `subset.test` is set).
        split: `val_size` (images, or a share of the training set below 1), `seed`, and optional
            `subset: {train, val, test}`: at most that many images per split, for small, still
            stratified, runs (the smoke env).

    Returns:
        train_indices, val_indices (into the official train set), test_indices (into the test set).
    """
    rng = np.random.default_rng(int(split["seed"]))
    val_size = resolve_size(split["val_size"], len(train_labels), "val_size")
    val_indices = stratified_sample(train_labels, val_size, rng)
    train_indices = np.setdiff1d(np.arange(len(train_labels)), val_indices)
    test_indices = np.arange(len(test_labels))
    if val_size >= len(train_labels):
        raise ValueError(
            f"val_size={split['val_size']} leaves no training images: the official training set has {len(train_labels)}"
        )
    splits = {
        "train": (train_indices, train_labels),
        "val": (val_indices, train_labels),
        "test": (test_indices, test_labels),
    }
    return _subsets(splits, split.get("subset") or {}, rng)


def _subsets(
    splits: dict[str, tuple[np.ndarray, np.ndarray]], subset: dict[str, int | None], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, val and test indices, each cut to at most its `subset` size by a stratified draw (if given).

    A split smaller than its subset size is kept whole, and the log says so: the smoke env's sizes
    then also fit a user's small image folder.
    """
    splits = dict(splits)
    for name, size in subset.items():
        if not size:
            continue
        if name not in splits:
            raise ValueError(f"Unknown split {name!r} in subset {subset}; known: train, val, test")
        indices, labels = splits[name]
        if size >= len(indices):
            logger.info("subset.%s=%s: the %s split has %d images, all kept", name, size, name, len(indices))
            continue
        splits[name] = (indices[stratified_sample(labels[indices], int(size), rng)], labels)
    (train_indices, _), (val_indices, _), (test_indices, _) = (splits[name] for name in ("train", "val", "test"))
    return train_indices.astype(np.int64), val_indices.astype(np.int64), test_indices.astype(np.int64)


def predefined_split(
    train_annotations: pd.DataFrame,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    split: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation indices chosen by each image's `Usage` (Training, PublicTest), and the test indices.

    Images the label scheme dropped (label -1) are left out of every split.

    Args:
        train_annotations: `Usage` of every image of the training pool.
        train_labels, test_labels: Class of every image, -1 where dropped.
        split: `seed`, and optional `subset: {train, val, test}` sizes (stratified draws, smoke env).

    Returns:
        train_indices, val_indices (into the training pool), test_indices (into the test set).
    """
    usage = train_annotations["Usage"].to_numpy()
    kept = train_labels >= 0
    splits = {
        "train": (np.flatnonzero(kept & (usage == "Training")), train_labels),
        "val": (np.flatnonzero(kept & (usage == "PublicTest")), train_labels),
        "test": (np.flatnonzero(test_labels >= 0), test_labels),
    }
    return _subsets(splits, split.get("subset") or {}, np.random.default_rng(int(split["seed"])))


def label_crowd_votes(
    train_annotations: pd.DataFrame, test_annotations: pd.DataFrame, label_mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame, dict[str, dict[str, float]]]:
    """Labels and training targets from FERPlus crowd votes under `label_mode`; every drop counted.

    Training images are labelled with `label_mode`, validation and test images always with
    the majority scheme.

    Args:
        train_annotations: Votes of the training pool (Training and PublicTest rows).
        test_annotations: Votes of the test set (PrivateTest rows).
        label_mode: majority, probability, crossentropy, multi_target or seed_distribution.

    Returns:
        `train_labels` and `test_labels` (int64 class, -1 where dropped); `train_targets`
        (float32 [N, 8]: the scheme's targets for Training rows, one-hot majority for PublicTest
        rows, zeros where dropped); the drop table (rows kept and dropped per reason, for every
        label mode and split); the drops of `label_mode` as MLflow metrics
        (`dropped.<split>.<reason>`, `kept.<split>`).
    """
    pool = ferplus.votes_from_table(train_annotations, "02_intermediate/<dataset>/train_annotations.csv")
    test = ferplus.votes_from_table(test_annotations, "02_intermediate/<dataset>/test_annotations.csv")
    if label_mode not in ferplus.LABEL_MODES:
        raise ValueError(
            f"preprocessing.<dataset>.label_mode must be one of {', '.join(ferplus.LABEL_MODES)}. Received: {label_mode!r}"
        )
    train_labels = np.full(len(pool.usage), -1, dtype=np.int64)
    train_targets = np.zeros((len(pool.usage), len(ferplus.FERPLUS_CLASS_NAMES)), dtype=np.float32)
    test_labels = np.full(len(test.usage), -1, dtype=np.int64)
    drops, metrics = [], {}
    for split, votes, labels in (
        ("train", pool, train_labels),
        ("val", pool, train_labels),
        ("test", test, test_labels),
    ):
        rows = np.flatnonzero(votes.usage == fer2013.SPLITS.index(split))
        for mode in ferplus.LABEL_MODES if split == "train" else (ferplus.EVALUATION_MODE,):
            outcome = ferplus.label_split(votes.votes[rows], votes.has_image[rows], mode)
            counts = outcome.drop_counts()
            drops.append(
                {"split": split, "label_mode": mode, "rows": len(rows), **counts, "kept": int(outcome.kept.sum())}
            )
            if mode != ferplus.split_label_mode(split, label_mode):
                continue
            labels[rows] = outcome.labels
            if split != "test":
                train_targets[rows] = outcome.targets
            metrics.update({f"dropped.{split}.{reason}": count for reason, count in counts.items()})
            metrics[f"kept.{split}"] = int(outcome.kept.sum())
    drop_table = pd.DataFrame(drops)
    drop_table.insert(
        2, "used", [row["label_mode"] == ferplus.split_label_mode(row["split"], label_mode) for row in drops]
    )
    return (
        train_labels,
        test_labels,
        train_targets,
        drop_table,
        {k: {"value": float(v), "step": 0} for k, v in metrics.items()},
    )


def channel_statistics(train_images: np.ndarray, train_indices: np.ndarray) -> dict[str, Any]:
    """Per-channel mean and standard deviation (0-255 scale) over the training split only.

    Args:
        train_images: uint8 images [N, H, W, C] of the official training set.
        train_indices: The training split.

    Returns:
        {"mean": [...], "std": [...], "images": n, "split": "train", "checksum": ...}, exact
        (integer sums); `checksum` lets `check_normalization` catch a hand-edited file.
    """
    channels = train_images.shape[-1]
    total = np.zeros(channels, dtype=np.int64)
    total_sq = np.zeros(channels, dtype=np.int64)
    for start in range(0, len(train_indices), STATS_CHUNK):
        chunk = train_images[np.sort(train_indices[start : start + STATS_CHUNK])].reshape(-1, channels)
        total += chunk.sum(axis=0, dtype=np.int64)
        wide = chunk.astype(np.int64)
        total_sq += np.einsum("ij,ij->j", wide, wide)
    pixels = len(train_indices) * int(np.prod(train_images.shape[1:-1]))
    mean = total / pixels
    std = np.sqrt(np.maximum(total_sq / pixels - mean**2, 0.0))
    statistics = {"mean": mean.tolist(), "std": std.tolist(), "images": len(train_indices), "split": "train"}
    return {**statistics, "checksum": statistics_checksum(statistics)}


def measured_checksum(path: Path, known_hash: str | None) -> str | None:
    """The file's checksum as measured now, with the algorithm of `known_hash` (sha256 if none)."""
    if not path.exists():
        return None
    algorithm = known_hash.split(":", 1)[0].lower() if known_hash and ":" in known_hash else "sha256"
    return f"{algorithm}:{pooch.file_hash(str(path), alg=algorithm)}"


def _class_counts(labels: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(labels, minlength=num_classes).astype(int).tolist()


def build_dataset_card(
    source: dict[str, Any],
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    train_indices: np.ndarray,
    val_indices: np.ndarray,
    test_indices: np.ndarray,
    class_names: list[str],
    statistics: dict[str, Any],
) -> tuple[dict[str, Any], str]:
    """The dataset card: where the data came from and what each split holds, as JSON and Markdown.

    Args:
        source: The raw file's `url`, `known_hash` and `destination`, or several such by name
            (MNIST's four files).

    Returns:
        The card as a dict, and the same card rendered as Markdown.
    """
    num_classes = len(class_names)
    splits = {
        "train": train_labels[train_indices],
        "val": train_labels[val_indices],
        "test": test_labels[test_indices],
    }
    sources = {"archive": source} if "url" in source else source
    card = {
        "sources": [_describe_file(name, file) for name, file in sources.items()],
        "image_shape": list(train_images.shape[1:]),
        "dtype": str(train_images.dtype),
        "classes": list(class_names),
        "split_sizes": {name: len(labels) for name, labels in splits.items()},
        "class_counts": {name: _class_counts(labels, num_classes) for name, labels in splits.items()},
        "channel_statistics": {"mean": statistics["mean"], "std": statistics["std"], "computed_on": "train split"},
    }
    return card, render_dataset_card(card)


def _describe_file(name: str, source: dict[str, Any]) -> dict[str, Any]:
    path = Path(source["destination"])
    if path.is_dir():  # an image folder: its files' total size, no checksum
        return {
            "name": name,
            "url": source["url"],
            "file": f"{path.name}/",
            "bytes": sum(file.stat().st_size for file in path.rglob("*") if file.is_file()),
            "checksum": None,
        }
    return {
        "name": name,
        "url": source["url"],
        "file": path.name,
        "bytes": path.stat().st_size if path.exists() else None,
        "checksum": measured_checksum(path, source.get("known_hash")),
    }


def build_crowd_label_card(
    fer2013_folder: str, source: dict[str, Any], label_drops: pd.DataFrame, label_mode: str, **dataset: Any
) -> tuple[dict[str, Any], str]:
    """The dataset card of FERPlus: both source files, the splits, and the drops of every label mode.

    Args:
        fer2013_folder: Where the user placed `fer2013.csv` (or `fer2013.tar.gz`).
        source: `fer2013new.csv`'s `url`, `known_hash` and `destination`.
        label_drops: Output of `label_crowd_votes`.
        label_mode: The scheme the training split was labelled with.
        **dataset: The other arguments of `build_dataset_card` (images, labels, indices, class
            names, statistics).
    """
    try:
        fer2013_file = fer2013.locate_fer2013(fer2013_folder)
    except FileNotFoundError:
        fer2013_file = Path(fer2013_folder) / fer2013.FER2013_FILENAME
    sources = {
        "fer2013": {"url": fer2013.FER2013_PAGE_URL, "destination": str(fer2013_file)},
        "fer2013new": source,
    }
    card, _ = build_dataset_card(sources, **dataset)
    card["label_mode"] = label_mode
    card["label_drops"] = label_drops.to_dict(orient="records")
    return card, render_dataset_card(card)


def render_dataset_card(card: dict[str, Any]) -> str:
    """The dataset card as a Markdown document."""
    counts = card["class_counts"]
    lines = [f"# Dataset card: {', '.join(source['file'] for source in card['sources'])}", ""]
    for source in card["sources"]:
        size = f" ({source['bytes']:,} bytes)" if source["bytes"] is not None else ""
        checksum = f", checksum `{source['checksum']}`" if source["checksum"] else ""
        lines.append(f"- Source: {source['url']}: `{source['file']}`{size}{checksum}")
    lines += [
        f"- Image shape: {tuple(card['image_shape'])}, {card['dtype']}",
        "- Split sizes: " + ", ".join(f"{name} {size:,}" for name, size in card["split_sizes"].items()),
        "- Channel mean (train split): " + ", ".join(f"{v:.3f}" for v in card["channel_statistics"]["mean"]),
        "- Channel std (train split): " + ", ".join(f"{v:.3f}" for v in card["channel_statistics"]["std"]),
        "",
        "| class | " + " | ".join(counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for index, name in enumerate(card["classes"]):
        lines.append(f"| {name} | " + " | ".join(f"{counts[split][index]:,}" for split in counts) + " |")
    if "label_drops" in card:
        lines += ["", *_render_label_drops(card["label_drops"], card["label_mode"])]
    return "\n".join(lines) + "\n"


def _render_label_drops(drops: list[dict[str, Any]], label_mode: str) -> list[str]:
    columns = [name for name in drops[0] if name not in ("split", "label_mode", "used")]
    lines = [
        f"## Labels: `{label_mode}` for training, majority for validation and test",
        "",
        "Images kept and dropped (by reason) under every label mode; **bold**: the modes of this run.",
        "",
        "| split | label mode | " + " | ".join(columns) + " |",
        "|---|---|" + "---:|" * len(columns),
    ]
    for row in drops:
        mode = f"**{row['label_mode']}**" if row["used"] else row["label_mode"]
        lines.append(f"| {row['split']} | {mode} | " + " | ".join(f"{row[c]:,}" for c in columns) + " |")
    return lines
