"""Benchmark: `decode_image` before the second shape pass (hand-written header parsers, in `convbench.serving`)
against after it (Pillow's header readers, in `convbench.data.images`), interleaved old/new/new/old in
subprocesses, on one PNG or JPEG of each size.

    git worktree add /tmp/convbench-old 989b0e7
    .venv/bin/python benchmarks/bench_decode_image.py --old /tmp/convbench-old --new .
"""

import argparse
import json
import subprocess
import sys

CODE = r"""
import sys, time, json, cv2, numpy as np
sys.path.insert(0, sys.argv[1] + "/src")
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
print(json.dumps(out))
"""
rows = {}
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--old", required=True, help="a checkout from before (989b0e7)")
parser.add_argument("--new", default=".", help="a checkout from after (default: this one)")
args = parser.parse_args()
for label, root in [("old", args.old), ("new", args.new), ("new", args.new), ("old", args.old)]:
    result = json.loads(
        subprocess.run(
            [sys.executable, "-c", CODE, root, label], capture_output=True, text=True, check=True
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
