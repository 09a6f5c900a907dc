"""Image folders as users have them, written by the tests: one subfolder per class, PNG/JPEG/BMP files of
any size, colour or grey, odd names, nested folders, a class with one image, stray files.

Import as ``import image_folders`` (``tests/`` is on pytest's ``pythonpath``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLASS_COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "frog": (30, 30, 200)}
"""RGB of each class' images (plus noise), so a model can learn them and a test can check the channel order."""

ODD_NAMES = ["with space (1).png", "ünïcødé-猫.jpg", "UPPER.PNG", "a.b.c.jpeg", "-leading-dash.bmp", "#hash%.png"]


def write_image(path: Path, rgb: np.ndarray) -> Path:
    """`rgb` [H, W, 3] or grey [H, W] written in the format of `path`'s suffix (OpenCV, so BGR on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(path.suffix.lower(), pixels)
    assert ok, path
    path.write_bytes(encoded.tobytes())
    return path


def class_image(class_name: str, rng: np.random.Generator, size: tuple[int, int] = (40, 52)) -> np.ndarray:
    """An RGB image of `class_name`'s colour with a little noise, `size` (height, width)."""
    colour = np.array(CLASS_COLOURS[class_name], dtype=np.int16)
    noise = rng.integers(-12, 13, (*size, 3))
    return np.clip(colour + noise, 0, 255).astype(np.uint8)


def make_user_folder(root: Path, per_class: int = 12, with_test: bool = False, seed: int = 0) -> dict[str, int]:
    """A folder as a user has it, under `root`; the number of readable images per class in train/.

    - cat, dog: `per_class` images each, in PNG, JPEG and BMP, some in nested folders, some with odd
      names, one grey, one of another size;
    - frog: a single image;
    - a text file and a `.DS_Store` beside the images (not images);
    - with `with_test`, test/<class>/ with 3 images of cat and dog, 1 of frog.
    """
    rng = np.random.default_rng(seed)
    suffixes = [".png", ".jpg", ".bmp"]
    counts = {}
    for class_name in ("cat", "dog"):
        folder = root / "train" / class_name
        for index in range(per_class):
            if index < len(ODD_NAMES):
                name = ODD_NAMES[index]
            else:
                name = f"nested/level {index % 2}/{class_name}_{index:03d}{suffixes[index % 3]}"
            size = (64, 48) if index == 1 else (40, 52)
            image = class_image(class_name, rng, size)
            if index == 2:
                image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            write_image(folder / name, image)
        counts[class_name] = per_class
    write_image(root / "train" / "frog" / "only one.png", class_image("frog", rng))
    counts["frog"] = 1
    (root / "train" / "cat" / "notes.txt").write_text("taken in the garden")
    (root / "train" / "dog" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    if with_test:
        for class_name, count in (("cat", 3), ("dog", 3), ("frog", 1)):
            for index in range(count):
                write_image(root / "test" / class_name / f"t{index}.png", class_image(class_name, rng))
    return counts
