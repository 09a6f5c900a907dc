"""Build small CIFAR binary archives in exactly the official layout, for tests.

Import as ``import cifar_archives`` (``tests/`` is on pytest's ``pythonpath``).

The builders write a ``.tar.gz`` whose folder, member names, record layout (label byte(s),
then the red, green and blue 32x32 planes, each row-major) and names files match the real
``cifar-10-binary.tar.gz`` / ``cifar-100-binary.tar.gz`` (see ``FORMATS.md``), with few
records. They return the arrays a correct parser must produce, so tests compare exactly.
A ``mutate`` hook edits the member contents before writing, to build the failure cases;
:func:`write_tar` and :func:`truncate` build archives that are broken in other ways.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable, Iterable
from gzip import GzipFile
from pathlib import Path

import numpy as np

CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR100_DIR = "cifar-100-binary"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-100 names in label order, as in the official fine_label_names.txt / coarse_label_names.txt.
CIFAR100_FINE_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)  # fmt: skip

# Tar member order of the fixtures: not sorted, so a parser has to put the training
# batches in order itself rather than rely on the order of the archive.
CIFAR10_MEMBER_ORDER = (
    "data_batch_1.bin",
    "batches.meta.txt",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "test_batch.bin",
    "readme.html",
    "data_batch_5.bin",
    "data_batch_2.bin",
)
CIFAR100_MEMBER_ORDER = ("coarse_label_names.txt", "fine_label_names.txt", "test.bin", "train.bin")

KNOWN_PIXEL = (5, 7)
"""(row, column) of the pixel set to :data:`KNOWN_RGB` in the first training image."""
KNOWN_RGB = (250, 128, 3)
"""Red, green, blue values of that pixel."""

Members = dict[str, bytes]
"""Archive member name (inside the dataset folder, e.g. ``"data_batch_1.bin"``) -> bytes."""


def images_for(count: int, rng: np.random.Generator) -> np.ndarray:
    """Return `count` random uint8 images of shape (32, 32, 3), HWC, RGB."""
    return rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)


def encode_records(images: np.ndarray, *label_columns: np.ndarray) -> bytes:
    """Encode HWC RGB images as CIFAR records: the label bytes, then the R, G and B planes.

    Written independently of the parser: each plane is one colour channel's 32x32 image,
    row-major, appended channel by channel.
    """
    out = bytearray()
    for index, image in enumerate(images):
        out += bytes(int(column[index]) for column in label_columns)
        for channel in range(3):  # red, green, blue
            out += np.ascontiguousarray(image[:, :, channel]).tobytes()  # row-major 32x32 plane
    return bytes(out)


def make_cifar10_archive(
    path: str | Path,
    per_batch: int = 20,
    test: int = 20,
    seed: int = 0,
    *,
    mutate: Callable[[Members], Members] | None = None,
) -> dict:
    """Write a CIFAR-10 binary archive in the official layout and return the expected result.

    Args:
        path: Where to write the ``.tar.gz``.
        per_batch: Records in each of ``data_batch_1.bin`` ... ``data_batch_5.bin``.
        test: Records in ``test_batch.bin``.
        seed: Seed of the random images and labels.
        mutate: Called with the members (name inside ``cifar-10-batches-bin/`` -> bytes, in
            archive order) and returns the members to write instead: drop, cut or alter some
            to build a broken archive. Names containing ``/`` are used as given (e.g.
            ``"../evil"``), others are put in the dataset folder.

    Returns:
        What :func:`convbench.data.cifar.read_cifar_archive` must return for the archive
        before `mutate`: ``train_images``, ``train_labels``, ``test_images``,
        ``test_labels``, ``class_names``.
    """
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(5):
        images = images_for(per_batch, rng)
        labels = rng.integers(0, 10, size=per_batch)
        batches.append((images, labels))
    if per_batch:
        batches[0][0][0, KNOWN_PIXEL[0], KNOWN_PIXEL[1]] = KNOWN_RGB
        batches[0][1][0] = 9  # the highest valid label, first record
    test_images = images_for(test, rng)
    test_labels = rng.integers(0, 10, size=test)
    members: Members = {}
    for name in CIFAR10_MEMBER_ORDER:
        if name.startswith("data_batch_"):
            images, labels = batches[int(name[len("data_batch_")]) - 1]
            members[name] = encode_records(images, labels)
        elif name == "test_batch.bin":
            members[name] = encode_records(test_images, test_labels)
        elif name == "batches.meta.txt":
            # Like the real file: one name a line, followed by blank lines.
            members[name] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode("ascii")
        else:
            members[name] = b'<meta HTTP-EQUIV="REFRESH" content="0; url=http://www.cs.toronto.edu/~kriz/cifar.html">\n'
    write_dataset_archive(path, CIFAR10_DIR, mutate(members) if mutate else members)
    return {
        "train_images": np.concatenate([images for images, _ in batches]),
        "train_labels": np.concatenate([labels for _, labels in batches]).astype(np.int64),
        "test_images": test_images,
        "test_labels": test_labels.astype(np.int64),
        "class_names": list(CIFAR10_CLASSES),
    }


def make_cifar100_archive(
    path: str | Path,
    train: int = 30,
    test: int = 20,
    seed: int = 0,
    *,
    mutate: Callable[[Members], Members] | None = None,
) -> dict:
    """Write a CIFAR-100 binary archive in the official layout and return the expected result.

    Records are a coarse label byte, a fine label byte, then the three planes. Fine labels
    are random, and each record's coarse label is random too (the parser does not relate
    them); the first training record has fine label 99 and coarse label 19.

    Args:
        path: Where to write the ``.tar.gz``.
        train: Records in ``train.bin``.
        test: Records in ``test.bin``.
        seed: Seed of the random images and labels.
        mutate: As for :func:`make_cifar10_archive`, with names inside ``cifar-100-binary/``.

    Returns:
        The expected ``train_images``, ``train_labels`` (fine), ``train_coarse_labels``,
        ``test_images``, ``test_labels``, ``test_coarse_labels``, ``class_names`` (fine)
        and ``coarse_class_names``.
    """
    rng = np.random.default_rng(seed)
    expected: dict = {}
    members: Members = {}
    for split, count in (("train", train), ("test", test)):
        images = images_for(count, rng)
        fine = rng.integers(0, 100, size=count)
        coarse = rng.integers(0, 20, size=count)
        if split == "train" and count:
            images[0, KNOWN_PIXEL[0], KNOWN_PIXEL[1]] = KNOWN_RGB
            fine[0], coarse[0] = 99, 19
        members[f"{split}.bin"] = encode_records(images, coarse, fine)  # coarse byte first
        expected[f"{split}_images"] = images
        expected[f"{split}_labels"] = fine.astype(np.int64)
        expected[f"{split}_coarse_labels"] = coarse.astype(np.int64)
    members["coarse_label_names.txt"] = ("\n".join(CIFAR100_COARSE_CLASSES) + "\n").encode("ascii")
    members["fine_label_names.txt"] = ("\n".join(CIFAR100_FINE_CLASSES) + "\n").encode("ascii")
    members = {name: members[name] for name in CIFAR100_MEMBER_ORDER}
    write_dataset_archive(path, CIFAR100_DIR, mutate(members) if mutate else members)
    expected["class_names"] = list(CIFAR100_FINE_CLASSES)
    expected["coarse_class_names"] = list(CIFAR100_COARSE_CLASSES)
    return expected


def write_dataset_archive(path: str | Path, folder: str, members: Members) -> Path:
    """Write `members` under `folder/` into a gzip-compressed tar, with a folder entry first."""
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [(_info(folder, tarfile.DIRTYPE), None)]
    for name, data in members.items():
        entries.append((_info(name if "/" in name else f"{folder}/{name}", tarfile.REGTYPE, len(data)), data))
    return write_tar(path, entries)


def write_tar(path: str | Path, entries: Iterable[tuple[tarfile.TarInfo, bytes | None]], *, gzip: bool = True) -> Path:
    """Write a tar (gzip-compressed unless `gzip` is False) from ``(TarInfo, data)`` pairs.

    Use :func:`member`, :func:`symlink` and :func:`folder` to build the entries, including
    unsafe ones (absolute paths, ``..``, links) that ``tarfile`` itself would not refuse to write.
    """
    path = Path(path)
    with path.open("wb") as raw:
        # mtime=0 and no file name in the gzip header keep the bytes reproducible.
        stream = GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) if gzip else raw
        with stream, tarfile.open(fileobj=stream, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for info, data in entries:
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    """Return a regular-file tar entry."""
    return _info(name, tarfile.REGTYPE, len(data)), data


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    """Return a symbolic-link tar entry."""
    info = _info(name, tarfile.SYMTYPE)
    info.linkname = target
    return info, None


def folder(name: str) -> tuple[tarfile.TarInfo, None]:
    """Return a folder tar entry."""
    return _info(name, tarfile.DIRTYPE), None


def truncate(path: str | Path, fraction: float = 0.5) -> Path:
    """Cut the file at `path` to `fraction` of its size (an interrupted download)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def file_hash(path: str | Path, alg: str = "md5") -> str:
    """Return the file's hex digest, as ``pooch.file_hash(path, alg)`` does."""
    digest = hashlib.new(alg)
    with Path(path).open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def known_hash(path: str | Path, alg: str = "md5") -> str:
    """Return the file's checksum in pooch's ``known_hash`` syntax, e.g. ``"md5:<hex>"``."""
    return f"{alg}:{file_hash(path, alg)}"


def _info(name: str, kind: bytes, size: int = 0) -> tarfile.TarInfo:
    """Return a TarInfo with fixed metadata, so archives are byte-for-byte reproducible."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.mtime = 1_243_000_000
    info.uname = info.gname = "kriz"
    return info


def file_mirror_params(folder: Path, per_batch: int = 200, test: int = 300, val_size: int = 300) -> list[str]:
    """Writes a CIFAR-10 archive of `5 * per_batch` training and `test` test records into `folder`, and returns the
    `--params` of a smoke run that downloads it from there by file:// and keeps `val_size` images for validation."""
    mirror = Path(folder) / "cifar-10-binary.tar.gz"
    make_cifar10_archive(mirror, per_batch=per_batch, test=test)
    return [
        f"ingestion.cifar10.source.url={mirror.as_uri()}",
        f"ingestion.cifar10.source.known_hash={known_hash(mirror)}",
        f"ingestion.cifar10.expected_counts.train={5 * per_batch}",
        f"ingestion.cifar10.expected_counts.test={test}",
        f"preprocessing.cifar10.val_size={val_size}",
    ]
