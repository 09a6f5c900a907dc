import numpy as np
import pytest
from kedro.io import DatasetError

from convbench.datasets import NumpyDataset, PathDataset


def test_roundtrip_keeps_dtype_shape_and_values(tmp_path):
    dataset = NumpyDataset(filepath=str(tmp_path / "deep" / "images.npy"))
    array = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    dataset.save(array)
    loaded = dataset.load()
    assert loaded.dtype == np.uint8 and loaded.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(loaded, array)
    assert dataset.exists()


def test_memory_mapped_load(tmp_path):
    dataset = NumpyDataset(filepath=str(tmp_path / "a.npy"), load_args={"mmap_mode": "r"})
    dataset.save(np.arange(10))
    assert isinstance(dataset.load(), np.memmap)


def test_object_arrays_are_refused_on_save(tmp_path):
    dataset = NumpyDataset(filepath=str(tmp_path / "a.npy"))
    with pytest.raises(DatasetError, match="no pickling"):
        dataset.save(np.array([{"a": 1}], dtype=object))
    assert not dataset.exists()


def test_a_pickled_file_is_never_unpickled(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match="allow_pickle=False"):
        NumpyDataset(filepath=str(path)).load()


def test_versioned_saves_keep_every_version(tmp_path):
    from kedro.io.core import Version

    first = NumpyDataset(filepath=str(tmp_path / "v.npy"), version=Version(None, "2026-01-01T00.00.00.000Z"))
    first.save(np.zeros(2))
    second = NumpyDataset(filepath=str(tmp_path / "v.npy"), version=Version(None, "2026-01-02T00.00.00.000Z"))
    second.save(np.ones(2))
    latest = NumpyDataset(filepath=str(tmp_path / "v.npy"), version=Version(None, None))
    np.testing.assert_array_equal(latest.load(), np.ones(2))


def test_path_dataset_loads_its_path_and_refuses_saves(tmp_path):
    dataset = PathDataset(path=str(tmp_path / "ckpt"))
    assert dataset.load() == tmp_path / "ckpt"
    with pytest.raises(DatasetError, match="read-only"):
        dataset.save("elsewhere")
