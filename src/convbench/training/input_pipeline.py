"""tf.data pipelines over in-memory uint8 arrays, batched by index gathers."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

FIRST_FLIP_STREAM = -1
"""With the recipe's seed, the stateless-random seed of each image's orientation in epoch 0: negative, so no
epoch's shuffle (`[seed, epoch]`) draws from the same bits."""


def first_orientations(count: int, seed: int) -> tf.Tensor:
    """[count] booleans: whether each image is mirrored in epoch 0 of alternating flips (a seeded coin each)."""
    return tf.random.stateless_uniform([count], seed=[seed, FIRST_FLIP_STREAM]) < 0.5


def mirrored_in(epoch: tf.Tensor, first: tf.Tensor, indices: tf.Tensor) -> tf.Tensor:
    """Whether images `indices` are mirrored in `epoch`: their first orientation, swapped every epoch."""
    return tf.not_equal(tf.gather(first, indices), tf.equal(tf.math.floormod(epoch, 2), 1))


def _batches(
    images: np.ndarray, targets: np.ndarray, num_classes: int, index_batches: tf.data.Dataset, sample: bool, seed: int
):
    images_t = tf.constant(images)
    if targets.ndim == 1:
        labels_t = tf.constant(targets.astype(np.int32))

        def batch_targets(batch_indices):
            return tf.one_hot(tf.gather(labels_t, batch_indices), num_classes)

    elif sample:
        log_distributions = tf.math.log(tf.constant(targets.astype(np.float32)))

        def batch_targets(batch_indices):
            drawn = tf.random.categorical(tf.gather(log_distributions, batch_indices), 1, seed=seed)[:, 0]
            return tf.one_hot(drawn, num_classes)

    else:
        targets_t = tf.constant(targets.astype(np.float32))

        def batch_targets(batch_indices):
            return tf.gather(targets_t, batch_indices)

    def gather(batch_indices, batch_mirrored=None):
        batch_images = tf.gather(images_t, batch_indices)
        if batch_mirrored is not None:
            batch_images = tf.where(batch_mirrored[:, None, None, None], tf.reverse(batch_images, [2]), batch_images)
        return batch_images, batch_targets(batch_indices)

    options = tf.data.Options()
    # tf.data's autotuning thread stalls the iterator's teardown at every epoch end for seconds
    # on a busy CPU (benchmarks/README.md); each batch is one gather, nothing to tune.
    options.autotune.enabled = False
    return (
        index_batches.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE).with_options(options)
    )


def training_dataset(
    images: np.ndarray,
    targets: np.ndarray,
    num_classes: int,
    batch_size: int,
    seed: int,
    sample_targets: bool = False,
    epochs: range | None = None,
    skip_steps: int = 0,
    steps_per_epoch: int | None = None,
    alternating_flips: bool = False,
) -> tf.data.Dataset:
    """Shuffled (reshuffled every epoch, seeded) batches of (uint8 images, float targets).

    Without `epochs`, each iteration of the dataset is one epoch in a new order. With `epochs`
    (e.g. `range(2, 10)`), one iteration holds those epochs' batches one after the other, and epoch
    e's order depends only on `seed` and e: a run resumed after epoch 2 sees the batches an
    uninterrupted run sees (fit it with `steps_per_epoch`). `skip_steps` leaves out the first
    batches of the first epoch (those a run interrupted mid-epoch had trained on); `steps_per_epoch`
    keeps only the first batches of each epoch (a budget's fraction of an epoch).

    `alternating_flips` mirrors each image in every other epoch: in epoch 0 as a coin seeded by
    `seed` and the image's index says, the other way round in epoch 1, and so on (airbench's
    alternating flip; without `epochs`, every iteration is epoch 0's orientation).

    Args:
        targets: Class of every image (one-hot encoded per batch), or a target distribution per
            image [N, num_classes] (used as is).
        sample_targets: With distributions: draw a one-hot target from each, anew for every batch
            (FERPlus' `probability` scheme).
    """
    count = len(images)
    first = first_orientations(count, seed) if alternating_flips else None
    if epochs is None:
        indices = (
            tf.data.Dataset.range(count).shuffle(count, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
        )
        if first is not None:
            indices = indices.map(lambda batch: (batch, mirrored_in(tf.constant(0, tf.int64), first, batch)))
    else:

        def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
            order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), seed=[seed, epoch])
            slices = order if first is None else (order, mirrored_in(epoch, first, order))
            batches = tf.data.Dataset.from_tensor_slices(slices).batch(batch_size)
            return batches.take(steps_per_epoch) if steps_per_epoch else batches

        indices = tf.data.Dataset.from_tensor_slices(tf.constant(list(epochs), tf.int64)).flat_map(epoch_batches)
        indices = indices.skip(skip_steps)
    return _batches(images, targets, num_classes, indices, sample=sample_targets, seed=seed)


def evaluation_dataset(images: np.ndarray, targets: np.ndarray, num_classes: int, batch_size: int) -> tf.data.Dataset:
    """Batches of (uint8 images, float targets) in their stored order; `targets` as in `training_dataset`."""
    indices = tf.data.Dataset.range(len(images)).batch(batch_size)
    return _batches(images, targets, num_classes, indices, sample=False, seed=0)
