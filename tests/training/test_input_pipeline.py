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
