"""Keras callbacks: per-epoch MLflow logging, epoch timing and resumable checkpoints."""

from __future__ import annotations

import json
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import keras
import numpy as np

from convbench.atomic import write_atomically
from convbench.metrics import HISTORY_METRICS, OBJECTIVE_METRIC, PENALTY_METRIC, metric_key
from convbench.models import registry
from convbench.training import augmentation, losses, optimizers
from convbench.training.losses import DATA_LOSS
from convbench.training.recipe import Lookahead as LookaheadSettings
from convbench.training.recipe import check_block, monitored_direction

logger = logging.getLogger(__name__)

CHECKPOINT_STATE = "state.json"

KERAS_CLASS_MODULES = (registry, augmentation, losses, optimizers)
"""The modules that register the Keras classes a checkpoint's model is made of: imported here, so
`load_checkpoint` finds them whatever the process imported before."""


def seed_generator_states(model: keras.Model) -> list[list[int]]:
    """The state of every random layer's seed generator (augmentation, dropout), in model order.

    `model.save` does not keep them, so the checkpoint stores them: a resumed run then draws the
    same augmentations as an uninterrupted one.
    """
    return [keras.ops.convert_to_numpy(v).tolist() for v in _seed_variables(model)]


def restore_seed_generator_states(model: keras.Model, states: list[list[int]]) -> None:
    """Sets the seed generators back to `states` (from `seed_generator_states`)."""
    variables = _seed_variables(model)
    if len(variables) != len(states):
        raise ValueError(f"the checkpoint holds {len(states)} seed generator states, the model has {len(variables)}")
    for variable, state in zip(variables, states, strict=True):
        variable.assign(np.asarray(state, dtype=variable.dtype))


def _seed_variables(model: keras.Model) -> list:
    return [v for v in model.variables if v.path.rsplit("/", 1)[-1] == "seed_generator_state"]


class DataLossLogs(keras.callbacks.Callback):
    """Makes the epoch logs' `loss` and `val_loss` the data loss (`convbench.training.losses.DataLoss`).

    Keras' own `loss` and `val_loss` are the objective: the recipe's loss (label-smoothed if it
    says so) plus the weights' L2 penalty. After this callback the logs hold `loss` and `val_loss`
    (the data loss, comparable with `test_loss`), `objective` (Keras' training loss) and
    `l2_penalty` (the penalty of the weights at the epoch's end; 0 without weight decay).
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        if DATA_LOSS in logs:
            logs[OBJECTIVE_METRIC] = logs["loss"]
            logs["loss"] = logs.pop(DATA_LOSS)
        if f"val_{DATA_LOSS}" in logs:
            logs["val_loss"] = logs.pop(f"val_{DATA_LOSS}")
        logs[PENALTY_METRIC] = weight_penalty(self.model)


def weight_penalty(model: keras.Model) -> float:
    """The sum of `model`'s regularisation losses (the L2 penalty of its kernels) at its current weights."""
    return float(sum(float(keras.ops.convert_to_numpy(loss)) for loss in model.losses))


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_time_s` (whole epoch) and `train_time_s` (before validation) to the epoch logs."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        self._train_end: float | None = None

    def on_test_begin(self, logs: dict | None = None) -> None:
        if self._train_end is None:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        end = time.perf_counter()
        if logs is not None:
            logs["epoch_time_s"] = end - self._start
            logs["train_time_s"] = (self._train_end or end) - self._start


LOOKAHEAD_DEFAULTS = LookaheadSettings()
"""The recipe's `lookahead` defaults (`convbench.training.recipe.Lookahead`)."""


class EpochSchedules(keras.callbacks.Callback):
    """At the start of each epoch, tells every layer of the model that has a `learn_in_epoch(epoch)` method
    (airbench's whitening bias, frozen after its first epochs) which epoch of the phase begins.

    The method returns the weights it has just frozen; their optimiser state (momentum, Adam's
    moments) is zeroed, so a frozen weight stops at once, as one the optimiser no longer updates.
    An optimiser's decoupled weight decay (AdamW) would still shrink it.
    """

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for layer in nested_layers(self.model):
            if callable(getattr(layer, "learn_in_epoch", None)):
                for weight in layer.learn_in_epoch(epoch):
                    reset_optimizer_state(self.model.optimizer, weight)


def reset_optimizer_state(optimizer: keras.optimizers.Optimizer, weight: keras.Variable) -> None:
    """Zeroes `optimizer`'s variables that belong to `weight` (named `<weight path>_<slot>` by Keras)."""
    prefix = weight.path.replace("/", "_") + "_"
    for slot in optimizer.variables:
        if slot.name.startswith(prefix):
            slot.assign(keras.ops.zeros_like(slot.value))


def nested_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """Every layer of `model`, those of the models inside it included."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from nested_layers(layer)


class Lookahead(keras.callbacks.Callback):
    """Every `every` steps, pulls the weights back to their running average (airbench's lookahead).

    At step t of T: `average = alpha * average + (1 - alpha) * weights`, then `weights = average`,
    with `alpha = decay * (t / T) ** power`: almost no averaging early, more and more towards the
    end. When training ends the weights are set to the average. Batch-norm statistics are averaged
    too (every float weight of the model).

    The average lives in variables beside the weights, on their device, and one compiled call
    updates all of them: nothing is copied to the host (tests/training/test_pipeline_overhead.py).
    The step t is counted here, not read from the optimizer: `steps_done` starts at the batches
    trained before this callback's first fit (those of the epochs and the part of an epoch a
    resumed run has behind it) and follows every batch, so no batch waits on the device.
    """

    def __init__(
        self,
        total_steps: int,
        every: int = LOOKAHEAD_DEFAULTS.every,
        decay: float = LOOKAHEAD_DEFAULTS.decay,
        power: float = LOOKAHEAD_DEFAULTS.power,
        steps_done: int = 0,
    ) -> None:
        super().__init__()
        check_block("lookahead", {"every": every, "decay": decay, "power": power})  # the recipe's rules
        if total_steps < 1 or steps_done < 0:
            raise ValueError(
                f"Lookahead needs total_steps >= 1 and steps_done >= 0. Received: total_steps={total_steps!r}, "
                f"steps_done={steps_done!r}"
            )
        self.total_steps, self.every, self.decay, self.power = int(total_steps), int(every), float(decay), float(power)
        self.steps_done = int(steps_done)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._weights = [weight for weight in self.model.weights if "float" in str(weight.dtype)]
        self._average = [
            keras.Variable(keras.ops.copy(weight.value), dtype=weight.dtype, trainable=False, name="lookahead_average")
            for weight in self._weights
        ]
        self._pull = compiled(self._pull_to_average)
        self._epoch_start = self.steps_done

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self.steps_done

    def _pull_to_average(self, alpha) -> None:
        for weight, average in zip(self._weights, self._average, strict=True):
            mixed = keras.ops.cast(alpha, average.dtype)
            pulled = mixed * average.value + (1 - mixed) * weight.value
            average.assign(pulled)
            weight.assign(keras.ops.copy(pulled))  # its own buffer: JAX's fit donates the weights' buffers

    def alpha(self, step: int) -> float:
        """The averaging weight at `step`."""
        return self.decay * min(1.0, step / self.total_steps) ** self.power

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.steps_done = self._epoch_start + batch + 1  # `batch` is the epoch's last batch run (steps_per_execution)
        if self.steps_done % self.every:
            return
        self.model.weights  # noqa: B018 (under JAX, reading `Callback.model` moves fit's weights into the variables)
        self._pull(keras.ops.convert_to_tensor(self.alpha(self.steps_done), "float32"))

    def on_train_end(self, logs: dict | None = None) -> None:
        for weight, average in zip(self._weights, self._average, strict=True):
            weight.assign(keras.ops.copy(average.value))


def compiled(function):
    """`function` as one graph call under the TensorFlow backend (a `tf.function`), as it is under the others."""
    if keras.backend.backend() != "tensorflow":
        return function
    import tensorflow as tf

    return tf.function(function)


def lookahead(settings: dict[str, Any] | None, total_steps: int, steps_done: int = 0) -> list[keras.callbacks.Callback]:
    """`[Lookahead]` for a recipe's `lookahead: {every, decay, power}`, `[]` for none.

    `steps_done`: the batches a resumed run has trained before (see `Lookahead`).
    """
    checked = check_block("lookahead", settings)
    if checked is None:
        return []
    return [Lookahead(total_steps, checked.every, checked.decay, checked.power, steps_done=steps_done)]


def recipe_callbacks(
    recipe: dict[str, Any], steps_per_epoch: int, steps_done: int = 0
) -> list[keras.callbacks.Callback]:
    """The callbacks that are part of the recipe's training algorithm (a layer's epoch schedule, `lookahead`),
    not of bookkeeping.

    `steps_done`: the batches trained before (a resumed run's), where their step count goes on from.
    """
    return [EpochSchedules(), *lookahead(recipe.get("lookahead"), int(recipe["epochs"]) * steps_per_epoch, steps_done)]


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the learning rate in force at the end of the epoch to the epoch logs as `lr`."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class MlflowEpochLogger(keras.callbacks.Callback):
    """Logs every epoch's metrics to the active MLflow run as `<prefix>.<metric>`, step = epoch (from 1).

    `prefix` is the architecture's name: the keys are `convbench.metrics.metric_key`'s.

    `replay` holds the history of epochs done before a resume; it is logged first so the
    run shows the whole curve, except the steps in `logged` (the run has them already).
    """

    def __init__(
        self,
        prefix: str,
        replay: dict[str, list[float]] | None = None,
        first_step: int = 1,
        logged: set[int] | None = None,
    ) -> None:
        super().__init__()
        metric_key(prefix, HISTORY_METRICS[0])  # a prefix no key could parse back fails now, not after an epoch
        self.prefix = prefix
        self.replay = replay or {}
        self.first_step = first_step  # step of this fit's first epoch (later phases continue the curve)
        self.logged = logged or set()
        self.replayed = False

    def _log(self, metrics: dict[str, float], step: int) -> None:
        import mlflow  # here, not at the top: the GPU kit (benchmarks/gpu) trains with these callbacks without MLflow

        if mlflow.active_run() is None:
            return
        mlflow.log_metrics({metric_key(self.prefix, name): float(value) for name, value in metrics.items()}, step=step)

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.log_replay()

    def log_replay(self) -> None:
        """Logs the epochs done before the resume, once (also when a resumed run has nothing left to train)."""
        if self.replayed:  # a second fit in the same run (after finishing a partly trained epoch)
            return
        self.replayed = True
        epochs_done = len(next(iter(self.replay.values()), []))
        for epoch in range(epochs_done):
            if self.first_step + epoch not in self.logged:
                self._log({name: values[epoch] for name, values in self.replay.items()}, step=self.first_step + epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._log(dict(logs or {}), step=self.first_step + epoch)


class ResumableCheckpoint(keras.callbacks.Callback):
    """Saves the training model (optimizer state included) and the history after every epoch.

    Each save writes `epoch-NNNN.keras` (under a temporary name, renamed when complete), then
    replaces `state.json` (which names that file) atomically, then removes older model files: an
    interruption at any moment leaves a state that points at a complete model. The state also
    keeps the seed generators' states, so a resumed run draws the augmentations an uninterrupted
    one would, and the MLflow run that wrote it. `fingerprint` identifies the recipe, model and
    data; a checkpoint with another fingerprint is never resumed.

    `save(epochs_done, steps_into_epoch)` also saves in the middle of an epoch (`InterruptCheckpoint`
    does on SIGTERM / Ctrl-C): the state then says how many batches of the next epoch are done.
    """

    def __init__(self, directory: Path, fingerprint: str, history: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.history = {name: list(values) for name, values in (history or {}).items()}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        self.save(epoch + 1)

    def save(self, epochs_done: int, steps_into_epoch: int = 0) -> Path:
        """Writes the checkpoint after `epochs_done` epochs and `steps_into_epoch` batches of the next; its model file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        model_file = (
            f"epoch-{epochs_done:04d}" + (f"-step-{steps_into_epoch:06d}" if steps_into_epoch else "") + ".keras"
        )
        import mlflow

        active = mlflow.active_run()
        state = {
            "fingerprint": self.fingerprint,
            "epochs_done": epochs_done,
            "steps_into_epoch": steps_into_epoch,
            "stopped_early": bool(self.model.stop_training) and not steps_into_epoch,
            "model": model_file,
            "seed_generators": seed_generator_states(self.model),
            "keras_version": keras.__version__,
            "mlflow_run_id": active.info.run_id if active else None,
            "history": self.history,
        }
        variables = self.model.variables + self.model.optimizer.variables
        write_atomically(self.directory / model_file, self._save_model, size_hint=variable_bytes(variables))
        write_atomically(self.directory / CHECKPOINT_STATE, lambda stream: stream.write(json.dumps(state).encode()))
        for older in self.directory.glob("epoch-*.keras"):
            if older.name != model_file:
                older.unlink()
        return self.directory / model_file

    def _save_model(self, stream: BinaryIO) -> None:
        """Saves the model into the temporary file `stream` is open on (Keras' `save` takes a file name)."""
        self.model.save(stream.name)


def variable_bytes(variables: list[keras.Variable]) -> int:
    """The bytes `variables` hold, from their shapes and dtypes (nothing is read from the device)."""
    return sum(math.prod(variable.shape) * np.dtype(variable.dtype).itemsize for variable in variables)


class TrainingInterrupted(RuntimeError):
    """Training stopped on SIGTERM or SIGINT after saving a checkpoint at a batch boundary.

    An `Exception` (not `KeyboardInterrupt`), so Kedro runs its `on_pipeline_error` hooks:
    `InterruptedRunHook` ends the MLflow run as KILLED and prints the command that resumes.
    """

    def __init__(self, signal_name: str, checkpoint: Path, epochs_done: int, steps_into_epoch: int) -> None:
        self.signal_name, self.checkpoint = signal_name, Path(checkpoint)
        self.epochs_done, self.steps_into_epoch = epochs_done, steps_into_epoch
        super().__init__(
            f"{signal_name} received: training stopped after epoch {epochs_done} and {steps_into_epoch} "
            f"batches of the next, saved in {checkpoint}. Rerun the same command to resume from there."
        )


class InterruptCheckpoint(keras.callbacks.Callback):
    """On SIGTERM or SIGINT (Ctrl-C): at the next batch boundary, saves a checkpoint, then raises `TrainingInterrupted`.

    The handlers are installed for the fit (`on_train_begin`) and restored by `restore_handlers`
    (the caller's `finally`: a raise skips `on_train_end`). After the first signal the previous
    handlers are back, so a second Ctrl-C stops at once. `steps_offset` is the batches of the
    epoch done before this fit (a fit that finishes a partly trained epoch).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, checkpoint: ResumableCheckpoint, steps_offset: int = 0) -> None:
        super().__init__()
        self.checkpoint, self.steps_offset = checkpoint, steps_offset
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signal.Signals(signum).name
        self.restore_handlers()

    def on_train_begin(self, logs: dict | None = None) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore_handlers(self) -> None:
        """Puts back the handlers that were installed before the fit."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.received is None:
            return
        steps = self.steps_offset + batch + 1
        self.checkpoint.save(self._epoch, steps)
        logger.warning(
            "%s: saved a checkpoint after epoch %d and %d batches in %s",
            self.received,
            self._epoch,
            steps,
            self.checkpoint.directory,
        )
        raise TrainingInterrupted(self.received, self.checkpoint.directory, self._epoch, steps)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping that, after a resume, counts the epochs before it from the checkpoint's history.

    The weights of a best epoch from before the resume are not kept in the checkpoint, so
    `restore_best_weights` restores the best epoch since the resume (or keeps the last weights).
    `mode: auto` is settled when the callback is made (`monitored_direction`), so the epochs
    replayed from the history and the epochs trained are compared the same way.
    """

    def __init__(self, history: dict[str, list[float]] | None = None, **options: Any) -> None:
        super().__init__(**options)
        if self.mode == "auto":
            self.mode = monitored_direction(self.monitor)
        self.history = history if history is not None else {}  # read at each fit's start: it may grow between fits

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        for epoch, value in enumerate(self.history.get(self.monitor, [])):
            if self.improves(value, self.best):
                self.best, self.best_epoch, self.wait = value, epoch, 0
            else:
                self.wait += 1

    def improves(self, value: float, best: float | None) -> bool:
        """Whether `value` beats `best` by more than `min_delta` in the monitored direction, compared as
        Keras compares each trained epoch (`keras.ops.less` or `greater`, in `floatx`)."""
        if best is None:
            return True
        delta = abs(self.min_delta)  # Keras makes it negative once it has chosen `min`
        if self.mode == "min":
            return bool(keras.ops.less(value + delta, best))
        return bool(keras.ops.greater(value - delta, best))


def early_stopping(config: dict[str, Any] | None, history: dict[str, list[float]]) -> list[keras.callbacks.Callback]:
    """`[EarlyStopping]` from a recipe's `early_stopping` block, e.g. `{monitor: val_loss, patience: 10}`; `[]` if none.

    `restore_best_weights` defaults to true: the model evaluated and saved is the best epoch's.
    """
    checked = check_block("early_stopping", config)
    if checked is None:
        return []
    return [ResumableEarlyStopping(history, **checked.model_dump())]


class CheckpointError(RuntimeError):
    """A checkpoint that exists but cannot be resumed: unreadable, truncated or from another Keras."""


def load_checkpoint(directory: Path, fingerprint: str) -> tuple[keras.Model, dict[str, Any]] | None:
    """The saved training model and state in `directory` if they belong to `fingerprint`, else None.

    Raises:
        CheckpointError: the state or model file is unreadable, or was written by another Keras
            version; the message names the file and says to delete the folder to start afresh.
    """
    directory = Path(directory)
    state_path = directory / CHECKPOINT_STATE
    if not state_path.exists():
        return None
    fix = f"Delete {directory} to train from scratch, or restore the file, then rerun."
    try:
        state = json.loads(state_path.read_text())
        model_path = directory / state["model"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"The checkpoint state {state_path} cannot be read ({error}). {fix}") from error
    if state.get("fingerprint") != fingerprint:
        logger.warning(
            "Ignoring the checkpoint in %s: it was made with another recipe, model or data "
            "(fingerprint %s, this run %s). Training starts from scratch.",
            directory,
            state.get("fingerprint"),
            fingerprint,
        )
        return None
    if state.get("keras_version", keras.__version__) != keras.__version__:
        raise CheckpointError(
            f"The checkpoint {model_path} was written by Keras {state['keras_version']}, this is Keras "
            f"{keras.__version__}: its optimizer state may not load the same. {fix}"
        )
    try:
        model = keras.models.load_model(model_path)
        restore_seed_generator_states(model, state.get("seed_generators", []))
    except Exception as error:  # a zip, HDF5 or deserialisation failure: each library raises its own type
        raise CheckpointError(f"The checkpoint model {model_path} cannot be loaded ({error}). {fix}") from error
    return model, state


def clear_checkpoint(directory: Path) -> None:
    """Removes the checkpoint in `directory` (once the run that trained it has completed)."""
    shutil.rmtree(directory, ignore_errors=True)
