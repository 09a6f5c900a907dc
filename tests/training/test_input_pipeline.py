import itertools

import numpy as np

from convbench.training.input_pipeline import evaluation_dataset, training_dataset


def test_training_batches_cover_every_image_once_per_epoch_with_matching_one_hot_labels():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(2, axis=1)
    labels = np.arange(10) % 3
    dataset = training_dataset(images, labels, num_classes=3, batch_size=4, seed=0)
    for _ in range(2):
        seen = []
        for batch_images, batch_labels in dataset:
            ids = batch_images.numpy()[:, 0, 0, 0]
            assert batch_images.dtype == "uint8"
            np.testing.assert_array_equal(batch_labels.numpy().argmax(axis=1), labels[ids])
            seen.extend(ids.tolist())
        assert sorted(seen) == list(range(10))


def test_training_order_is_seeded_and_reshuffled_each_epoch():
    images = np.arange(64, dtype=np.uint8).reshape(64, 1, 1, 1)
    labels = np.zeros(64, dtype=np.int64)

    def epochs(seed):
        dataset = training_dataset(images, labels, 1, 64, seed=seed)
        return [next(iter(dataset))[0].numpy().ravel().tolist() for _ in range(2)]

    first, second = epochs(7)
    assert first != second
    assert epochs(7) == [first, second]


def test_evaluation_batches_keep_the_stored_order():
    images = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1)
    batches = [b[0].numpy().ravel().tolist() for b in evaluation_dataset(images, np.zeros(5), 2, batch_size=2)]
    assert batches == [[0, 1], [2, 3], [4]]


def orientations(dataset) -> list[dict[int, bool]]:
    """Per epoch of `dataset` (one iteration), whether each image came mirrored: image i is [i, 100 + i]."""
    epochs: list[dict[int, bool]] = []
    for batch_images, _ in dataset:
        for left, right in batch_images.numpy()[:, 0, :, 0].tolist():
            index = min(left, right)
            if not epochs or index in epochs[-1]:
                epochs.append({})
            epochs[-1][index] = left > right
    return epochs


ASYMMETRIC = np.stack([np.arange(64), 100 + np.arange(64)], axis=1).astype(np.uint8).reshape(64, 1, 2, 1)


def test_alternating_flips_mirror_each_image_in_every_other_epoch_from_a_seeded_coin():
    dataset = training_dataset(ASYMMETRIC, np.zeros(64), 1, 16, seed=3, epochs=range(0, 4), alternating_flips=True)
    by_epoch = orientations(dataset)
    assert len(by_epoch) == 4 and all(sorted(epoch) == list(range(64)) for epoch in by_epoch)
    for earlier, later in itertools.pairwise(by_epoch):
        assert all(later[index] is not earlier[index] for index in range(64))
    assert 16 <= sum(by_epoch[0].values()) <= 48  # a coin per image, not all one way
    other_seed = training_dataset(ASYMMETRIC, np.zeros(64), 1, 16, seed=4, epochs=range(0, 1), alternating_flips=True)
    assert orientations(other_seed)[0] != by_epoch[0]


def test_alternating_flips_resume_with_the_orientations_of_the_uninterrupted_run():
    def run(epochs):
        return training_dataset(ASYMMETRIC, np.zeros(64), 1, 16, seed=3, epochs=epochs, alternating_flips=True)

    uninterrupted = [batch.numpy().tolist() for batch, _ in run(range(0, 3))]
    resumed = [batch.numpy().tolist() for batch, _ in run(range(1, 3))]
    assert resumed == uninterrupted[4:]


def test_without_alternating_flips_no_image_is_mirrored_by_the_input_pipeline():
    dataset = training_dataset(ASYMMETRIC, np.zeros(64), 1, 16, seed=3, epochs=range(0, 2))
    assert not any(mirrored for epoch in orientations(dataset) for mirrored in epoch.values())


def test_alternating_flips_without_epochs_give_epoch_zeros_orientations_every_iteration():
    """The budget calibration's endless dataset: each iteration mirrors the images as epoch 0 does."""
    epoch_zero = orientations(
        training_dataset(ASYMMETRIC, np.zeros(64), 1, 16, seed=3, epochs=range(0, 1), alternating_flips=True)
    )[0]
    endless = training_dataset(ASYMMETRIC, np.zeros(64), 1, 16, seed=3, alternating_flips=True)
    assert orientations(endless) == [epoch_zero]
    assert orientations(endless) == [epoch_zero]  # a second iteration: another order, the same orientations
