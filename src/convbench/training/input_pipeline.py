"""tf.data pipelines over in-memory uint8 arrays, batched by index gathers."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def _one_hot_batches(images: np.ndarray, labels: np.ndarray, num_classes: int, index_batches: tf.data.Dataset):
    images_t = tf.constant(images)
    labels_t = tf.constant(labels.astype(np.int32))

    def gather(batch_indices):
        batch_labels = tf.gather(labels_t, batch_indices)
        return tf.gather(images_t, batch_indices), tf.one_hot(batch_labels, num_classes)

    options = tf.data.Options()
    # tf.data's autotuning thread stalls the iterator's teardown at every epoch end for seconds
    # on a busy CPU (benchmarks/README.md); each batch is one gather, nothing to tune.
    options.autotune.enabled = False
    return (
        index_batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
        .with_options(options)
    )


def training_dataset(
    images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int, seed: int
) -> tf.data.Dataset:
    """Shuffled (reshuffled every epoch, seeded) batches of (uint8 images, one-hot labels)."""
    count = len(images)
    indices = (
        tf.data.Dataset.range(count)
        .shuffle(count, seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    return _one_hot_batches(images, labels, num_classes, indices)


def evaluation_dataset(
    images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int
) -> tf.data.Dataset:
    """Batches of (uint8 images, one-hot labels) in their stored order."""
    indices = tf.data.Dataset.range(len(images)).batch(batch_size)
    return _one_hot_batches(images, labels, num_classes, indices)
