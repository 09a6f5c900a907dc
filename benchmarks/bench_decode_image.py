"""Benchmark: `decode_image` before the second shape pass (hand-written header parsers, in `convbench.serving`)
against after it (`convbench.data.images`), interleaved old/new/new/old in
subprocesses, on one PNG or JPEG of each size, and through the parser that decodes most files,
`read_image_folder`, on a folder of 2,000 32x32 PNGs in 10 classes (written once to benchmarks/_work).

    git worktree add /tmp/convbench-old 989b0e7
    .venv/bin/python benchmarks/bench_decode_image.py --old /tmp/convbench-old --new .
"""

import argparse
import json
import pathlib
import subprocess
import sys

import cv2
import numpy as np

FOLDER = pathlib.Path(__file__).parent / "_work" / "image_folder_32px_png"
FOLDER_FILES = 2_000

CODE = (
    f"FOLDER_FILES = {FOLDER_FILES}\n"
    + r"""
import sys, time, json, cv2, numpy as np
sys.path.insert(0, sys.argv[1] + "/src")
from convbench.data.image_folder import read_image_folder
if sys.argv[2] == "old":
    from convbench.serving import decode_image
    call = lambda data: decode_image(data, 3, "x")
else:
    from convbench.data.images import decode_image
    call = lambda data: decode_image(data, 3, "x", max_pixels=100_000_000)
rng = np.random.default_rng(0)
out = {}
for kind, size in (("png", 32), ("jpg", 64), ("png", 256)):
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    data = cv2.imencode("." + kind, image)[1].tobytes()
    call(data)
    began = time.perf_counter(); n = 3000 if size < 256 else 300
    for _ in range(n): call(data)
    out[f"{kind} {size}x{size}"] = (time.perf_counter() - began) / n * 1e6
read_image_folder(sys.argv[3], 32)
began = time.perf_counter()
for _ in range(3): read_image_folder(sys.argv[3], 32)
out["read_image_folder, 2,000 32x32 PNGs (per file)"] = (time.perf_counter() - began) / 3 / FOLDER_FILES * 1e6
print(json.dumps(out))
"""
)


def write_folder() -> None:
    """2,000 random 32x32 PNGs under FOLDER/train/<class>/, unless already there."""
    if len(list(FOLDER.glob("train/*/*.png"))) == FOLDER_FILES:
        return
    rng = np.random.default_rng(0)
    for index in range(FOLDER_FILES):
        path = FOLDER / "train" / f"class{index % 10}" / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))


rows = {}
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--old", required=True, help="a checkout from before (989b0e7)")
parser.add_argument("--new", default=".", help="a checkout from after (default: this one)")
args = parser.parse_args()
write_folder()
for label, root in [("old", args.old), ("new", args.new), ("new", args.new), ("old", args.old)]:
    result = json.loads(
        subprocess.run(
            [sys.executable, "-c", CODE, root, label, str(FOLDER)], capture_output=True, text=True, check=True
        ).stdout.splitlines()[-1]
    )
    for key, value in result.items():
        rows.setdefault(key, {}).setdefault(label, []).append(value)
print("| image | old µs per decode (2 runs) | new µs | new / old |")
print("|---|---:|---:|---:|")
for key, by in rows.items():
    old, new = sum(by["old"]) / 2, sum(by["new"]) / 2
    print(
        f"| {key} | {by['old'][0]:.0f}, {by['old'][1]:.0f} | {by['new'][0]:.0f}, {by['new'][1]:.0f} | {new / old:.2f} |"
    )
