"""Trains the `mlp` architecture with and without `distribute` on two logical CPU devices; prints JSON.

Run by tests/training/test_distribute.py in a subprocess, since the logical devices must be
configured before TensorFlow initialises (pytest's process already did):

    python tests/training/distributed_fit.py OUT_DIR

Every training builds the model with `build_model` from a recipe resolved by `resolve_recipe` (as
`kedro run` does) and fits it with `fit`, on the same data with the same seed, no augmentation
unless stated. Scenarios (the keys of the JSON printed on the last line of stdout):

- `single`: `distribute: null`, batch 32, lr 0.05.
- `mirrored_none`: two replicas, `scale: none`: the same global batch of 32 (16 per replica).
- `mirrored_linear`: two replicas, `scale: linear`, batch 16 and lr 0.025 per replica: scaled to a
  global batch of 32 at lr 0.05, i.e. the `single` training again.
- `augmented`: two replicas, `scale: none`, with pad-crop and flips, uninterrupted.
- `resumed`: `augmented` interrupted (KeyboardInterrupt) after its second epoch, then resumed.

Each holds the resolved recipe, the history, the summary and the seconds it took; the final
weights are saved to OUT_DIR/<scenario>.npz.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import sys
import time
from pathlib import Path

import tensorflow as tf

CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(CPU, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.set_visible_devices([], "GPU")  # on a GPU machine too, one device vs two is CPU vs CPU

import numpy as np  # noqa: E402

from convbench.pipelines.training.nodes import build_model, resolve_recipe  # noqa: E402
from convbench.training import callbacks as callbacks_module  # noqa: E402
from convbench.training.fit import fit  # noqa: E402

DEVICES = ["/cpu:0", "/cpu:1"]
TRAIN, VAL = 128, 64

RECIPE = {
    "model": {"units": 32, "hidden_layers": 2, "dropout": 0.0},
    "optimizer": {"name": "sgd", "momentum": 0.9},
    "schedule": {"name": "constant", "lr": 0.05},
    "epochs": 3,
    "batch_size": 32,
    "eval_batch_size": 64,
    "label_smoothing": 0.0,
    "augmentation": {},
    "early_stopping": None,
    "mixed_precision": None,
    "jit_compile": False,
    "distribute": None,
    "seed": 0,
}


def data():
    """Learnable images: the red channel codes the class (as tests/tiny_training.py)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, TRAIN + VAL)
    images = rng.integers(0, 256, (TRAIN + VAL, 16, 16, 3), dtype=np.uint8)
    images[..., 0] = (labels * 100)[:, None, None].astype(np.uint8)
    return images, labels


def train(name: str, settings: dict, out: Path, interrupt_after: int | None = None) -> dict:
    images, labels = data()
    train_indices, val_indices = np.arange(TRAIN), np.arange(TRAIN, TRAIN + VAL)
    normalization = {"mean": [128.0] * 3, "std": [64.0] * 3}
    recipe = resolve_recipe(RECIPE, None, settings)
    start = time.perf_counter()

    def run():
        model = build_model(images, train_indices, ["a", "b", "c"], normalization, recipe, "mlp", "tiny")
        return fit(
            model,
            (images[train_indices], labels[train_indices]),
            (images[val_indices], labels[val_indices]),
            3,
            recipe,
            out / f"{name}-checkpoint",
            "mlp",
        )

    interrupted = None
    if interrupt_after is not None:
        original = callbacks_module.ResumableCheckpoint.on_epoch_end

        def interrupt(self, epoch, logs=None):
            original(self, epoch, logs)
            if epoch + 1 == interrupt_after:
                raise KeyboardInterrupt("simulated Ctrl-C")

        callbacks_module.ResumableCheckpoint.on_epoch_end = interrupt
        try:
            run()
        except KeyboardInterrupt:
            state = json.loads((out / f"{name}-checkpoint" / "state.json").read_text())
            interrupted = {"epochs_done": state["epochs_done"], "loss": state["history"]["loss"]}
        finally:
            callbacks_module.ResumableCheckpoint.on_epoch_end = original
    model, history, summary = run()
    np.savez(out / f"{name}.npz", *model.get_weights())
    return {
        "recipe": recipe,
        "history": history,
        "summary": summary,
        "interrupted": interrupted,
        "seconds": time.perf_counter() - start,
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mirrored = {"strategy": "mirrored", "devices": DEVICES}
    augmented = {"distribute": {**mirrored, "scale": "none"}, "augmentation": {"pad_crop": 2, "horizontal_flip": True}}
    results = {
        "single": train("single", {}, out),
        "mirrored_none": train("mirrored_none", {"distribute": {**mirrored, "scale": "none"}}, out),
        "mirrored_linear": train(
            "mirrored_linear",
            {
                "distribute": {**mirrored, "scale": "linear"},
                "batch_size": 16,
                "eval_batch_size": 32,
                "schedule": {"lr": 0.025},
            },
            out,
        ),
        "augmented": train("augmented", augmented, out),
        "resumed": train("resumed", augmented, out, interrupt_after=2),
    }
    print(json.dumps(results, default=float))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
