"""Atomic writes under a kill between write and rename, and under a full disk (injected ENOSPC)."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from kedro.io.core import DatasetError

from convbench.atomic import DiskFullError, partial_path, write_atomically
from convbench.datasets import NumpyDataset


def killed_between_write_and_rename(script: str, tmp_path) -> subprocess.CompletedProcess:
    """Runs `script` in a fresh Python that SIGKILLs itself when the first finished file is about to be renamed."""
    prelude = textwrap.dedent(
        """
        import os, signal
        import convbench.atomic as atomic
        def kill_instead(partial, path):
            assert partial.stat().st_size > 0, "the whole file was written"
            os.kill(os.getpid(), signal.SIGKILL)
        atomic.replace_into_place = kill_instead
        """
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_kill_between_write_and_rename_leaves_the_previous_array_whole(tmp_path):
    target = tmp_path / "train_images.npy"
    NumpyDataset(filepath=str(target)).save(np.arange(10, dtype=np.uint8))
    result = killed_between_write_and_rename(
        f"""
        import numpy as np
        from convbench.datasets import NumpyDataset
        NumpyDataset(filepath={str(target)!r}).save(np.full(1000, 7, dtype=np.uint8))
        """,
        tmp_path,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    np.testing.assert_array_equal(NumpyDataset(filepath=str(target)).load(), np.arange(10, dtype=np.uint8))
    assert partial_path(target).exists(), "the finished temporary file is what the kill left behind"
    NumpyDataset(filepath=str(target)).save(np.ones(3))  # the rerun overwrites the leftover
    assert not partial_path(target).exists() and NumpyDataset(filepath=str(target)).load().tolist() == [1, 1, 1]


def test_a_kill_between_write_and_rename_leaves_the_previous_checkpoint_loadable(tmp_path):
    checkpoint = tmp_path / "ckpt"
    script = f"""
        import sys
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from pathlib import Path
        from tiny_training import RECIPE, new_model, tiny_data
        from convbench.training.fit import fit
        fit(new_model(), tiny_data(64, 0), tiny_data(32, 1), 3, {{**RECIPE, "epochs": EPOCHS}}, Path({str(checkpoint)!r}), "resnet")
        """
    first = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script).replace("EPOCHS", "1")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    state_before = (checkpoint / "state.json").read_text()
    result = killed_between_write_and_rename(script.replace("EPOCHS", "2"), tmp_path)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert (checkpoint / "state.json").read_text() == state_before, "state.json still names epoch 1's model"
    state = json.loads(state_before)
    assert (checkpoint / state["model"]).exists()

    from convbench.training.callbacks import load_checkpoint

    model, loaded_state = load_checkpoint(checkpoint, state["fingerprint"])
    assert loaded_state["epochs_done"] == 1 and model.count_params() > 0


def test_a_truncated_array_names_the_file_and_the_pipeline_that_rebuilds_it(tmp_path):
    target = tmp_path / "train_labels.npy"
    NumpyDataset(filepath=str(target)).save(np.arange(1000))
    target.write_bytes(target.read_bytes()[:-100])
    for load_args in ({}, {"mmap_mode": "r"}):
        with pytest.raises(DatasetError, match=r"not a whole \.npy array") as error:
            NumpyDataset(filepath=str(target), load_args=load_args).load()
        assert str(target) in str(error.value) and "delete it and rerun" in str(error.value)


def test_a_full_disk_names_the_path_and_the_bytes_and_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "test_images.npy"
    NumpyDataset(filepath=str(target)).save(np.zeros(5, dtype=np.uint8))
    real_save = np.save

    def save_until_the_disk_fills(stream, array, **kwargs):
        stream.write(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", save_until_the_disk_fills)
    with pytest.raises(DatasetError) as error:  # Kedro wraps the dataset's error, keeping its message
        NumpyDataset(filepath=str(target)).save(np.zeros((100, 32, 32, 3), dtype=np.uint8))
    assert str(target) in str(error.value) and "307,200 bytes" in str(error.value)
    assert not partial_path(target).exists()
    monkeypatch.setattr(np, "save", real_save)
    assert NumpyDataset(filepath=str(target)).load().tolist() == [0] * 5
    NumpyDataset(filepath=str(target)).save(np.ones(2))  # after freeing space, the rerun succeeds
    assert NumpyDataset(filepath=str(target)).load().tolist() == [1, 1]


def test_write_atomically_reports_enospc_as_disk_full_with_the_bytes_written(tmp_path):
    def write(stream):
        stream.write(b"x" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match="4,096 bytes") as error:
        write_atomically(tmp_path / "report.json", write)
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(tmp_path / "report.json")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB tmpfs (needs mount rights: root in CI's container); skipped where mounting is refused."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip() or mounted.returncode}); "
            "the injected-ENOSPC tests cover the same code"
        )
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_really_full_disk_keeps_the_previous_array_and_the_rerun_succeeds(small_disk):
    target = small_disk / "train_images.npy"
    NumpyDataset(filepath=str(target)).save(np.full(100_000, 3, dtype=np.uint8))
    filler = small_disk / "other_files"
    filler.write_bytes(b"\0" * 700_000)
    with pytest.raises(DatasetError) as error:
        NumpyDataset(filepath=str(target)).save(np.zeros(400_000, dtype=np.uint8))
    assert str(target) in str(error.value) and "400,000 bytes" in str(error.value)
    assert isinstance(error.value.__cause__, DiskFullError) and not partial_path(target).exists()
    assert NumpyDataset(filepath=str(target)).load().tolist() == [3] * 100_000
    filler.unlink()  # the user frees space
    NumpyDataset(filepath=str(target)).save(np.zeros(400_000, dtype=np.uint8))
    assert NumpyDataset(filepath=str(target)).load().shape == (400_000,)


def test_a_really_full_disk_while_checkpointing_names_the_checkpoint(small_disk):
    sys.path.insert(0, os.path.dirname(__file__))
    from tiny_training import RECIPE, new_model, tiny_data

    from convbench.training.fit import fit

    (small_disk / "other_files").write_bytes(b"\0" * 1_000_000)
    with pytest.raises(DiskFullError) as full:
        fit(new_model(), tiny_data(64, 0), tiny_data(32, 1), 3, {**RECIPE, "epochs": 1}, small_disk / "ckpt", "resnet")
    assert str(small_disk / "ckpt" / "epoch-0001.keras") in str(full.value) and "bytes" in str(full.value)
    assert [path.name for path in (small_disk / "ckpt").iterdir()] == []
