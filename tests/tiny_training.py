"""A tiny ResNet, recipe and learnable data for the training tests: seconds to fit on a CPU."""

import numpy as np

from convbench.models.preprocessing import with_normalization
from convbench.models.resnet import build_resnet

RECIPE = {
    "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
    "schedule": {"name": "cosine", "peak_lr": 0.05, "warmup_epochs": 1},
    "epochs": 3,
    "batch_size": 32,
    "eval_batch_size": 64,
    "label_smoothing": 0.1,
    "augmentation": {"pad_crop": 2, "horizontal_flip": True},
    "jit_compile": False,
    "seed": 0,
}


def tiny_data(count: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    images = rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8)
    images[..., 0] = (labels * 100)[:, None, None].astype(np.uint8)  # learnable: red channel codes the class
    return images, labels


def new_model():
    return with_normalization(build_resnet((16, 16, 3), 3, depth=8), [128.0] * 3, [64.0] * 3)
