"""`kedro run --runner=convbench.runner.DaskRunner`: every node a task on a `dask.distributed` cluster.

- With no address, a cluster of this machine: one worker per visible GPU (each pinned to its GPU), or
  one worker with all the CPU cores. With `--runner-params=address=tcp://host:8786` or
  `DASK_SCHEDULER_ADDRESS`, the workers of an existing cluster.
- A node is submitted as soon as its upstream nodes have ended, so the zoo's trainings run side by
  side after one ingestion. Nodes read and write the catalog's files, which every worker must see at
  the same path (shared storage). Only the datasets the catalog keeps in memory (an untrained model,
  a path) travel as task results, from worker to worker, never through the scheduler or this process.
- MLflow: each node logs into the run of this `kedro run`, from its worker (`tracking.in_run`),
  with its time and status (`MlflowNodeTrackingHook`, run where the node runs); its parameters are
  logged here, by kedro-mlflow's hook.
- A worker that dies: the scheduler runs its task again elsewhere, and a training resumes from its
  checkpoint. No finished node runs again, except one whose in-memory output a node yet to run
  needed and lost with the worker.
- GPUs: the local cluster pins one GPU to each one-thread worker (`CUDA_VISIBLE_DEVICES`). A worker
  started by hand with several threads on a host with several GPUs spreads the nodes it runs at once
  over its devices instead (`DeviceSlots`): each node runs under `keras.device` on the device the
  fewest of its running nodes use, and a Keras model it receives from another node is moved there;
  a search's trial loops run one per device, each on its own.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import distributed
import keras
import pluggy
from distributed import (
    Client,
    Future,
    LocalCluster,
    Nanny,
    Scheduler,
    SpecCluster,
    WorkerPlugin,
    get_worker,
)
from distributed.system import MEMORY_LIMIT
from kedro.framework.hooks import markers, specs
from kedro.io import CatalogProtocol, DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

from convbench.hooks.mlflow_runs import MlflowNodeTrackingHook, log_node_runs
from convbench.keras_objects import import_custom_objects
from convbench.tracking import RunLink, active_run_link, in_run

logger = logging.getLogger(__name__)

SCHEDULER_ADDRESS_ENV = "DASK_SCHEDULER_ADDRESS"
"""The scheduler to join when `--runner-params=address=...` is not given (Dask's own variable name)."""

DASHBOARD_ADDRESS = "127.0.0.1:8787"
"""The local cluster's dashboard (Dask's default port, on this machine only); another port if taken."""

WAIT_STEP_S = 30.0
NO_WORKERS_TIMEOUT_S = 600.0
"""How long a run waits for a cluster that has lost all its workers before it fails (their tasks wait too)."""

FANS_OUT_TAG = "fans_out"
"""Tag of a node that runs tasks of its own on the cluster (`on_every_worker`): while it waits for them, its
worker's thread is free for them."""

CLUSTER: ContextVar[Client | None] = ContextVar("convbench_dask_client", default=None)
"""The client of the Dask worker that runs a `FANS_OUT_TAG` node, while it runs."""

WORKER_DEVICES_ENV = "CONVBENCH_WORKER_DEVICES"
"""Keras device names (`gpu:0,gpu:1`) over which a worker spreads the nodes it runs at the same time; where
unset, the GPUs it sees when it has more than one of them and more than one thread (`worker_devices`)."""

PLACED_DEVICE: ContextVar[str | None] = ContextVar("convbench_placed_device", default=None)
"""The device the running node or cluster task was given (`DeviceSlots`); None for the worker's default. Threads
that `tracking.in_run` starts inherit it (`on_placed_device` enters it there)."""

NODE_PROCESS_HOOKS = (MlflowNodeTrackingHook,)
"""Node hooks that must run in the node's process (they time it): fresh ones run on the worker."""


def visible_gpus() -> list[str]:
    """The GPUs this process may use: `CUDA_VISIBLE_DEVICES` where set, else those `nvidia-smi` lists."""
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [gpu.strip() for gpu in declared.split(",") if gpu.strip() and gpu.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    return listing.stdout.split() if listing.returncode == 0 else []


@functools.cache
def worker_gpus() -> list[str]:
    """`visible_gpus()` of this process, looked up once."""
    return visible_gpus()


def worker_devices(nthreads: int) -> list[str]:
    """The devices this worker process spreads its concurrent nodes over: `CONVBENCH_WORKER_DEVICES` where
    set, else `gpu:0` ... for each GPU it sees when it has several GPUs and `nthreads` > 1, else none."""
    declared = os.environ.get(WORKER_DEVICES_ENV)
    if declared is not None:
        return [device.strip() for device in declared.split(",") if device.strip()]
    gpus = worker_gpus()
    return [f"gpu:{index}" for index in range(len(gpus))] if nthreads > 1 and len(gpus) > 1 else []


class DeviceSlots:
    """A worker's devices, handed out to the nodes it runs at the same time: each node gets the device that
    the fewest running nodes hold (the first such one), so N nodes on N devices get one each."""

    def __init__(self, devices: list[str]) -> None:
        self.devices = list(devices)
        self._holders = dict.fromkeys(self.devices, 0)
        self._lock = threading.Lock()

    @contextmanager
    def taken(self) -> Iterator[str | None]:
        """A device held for the `with` block; None where there are no devices to spread over."""
        if not self.devices:
            yield None
            return
        with self._lock:
            device = min(self.devices, key=self._holders.__getitem__)
            self._holders[device] += 1
        try:
            yield device
        finally:
            with self._lock:
                self._holders[device] -= 1


@functools.cache
def device_slots(nthreads: int) -> DeviceSlots:
    """This worker process's `DeviceSlots` over `worker_devices(nthreads)`, made once."""
    return DeviceSlots(worker_devices(nthreads))


NO_SLOTS = DeviceSlots([])


@contextmanager
def placed(slots: DeviceSlots) -> Iterator[str | None]:
    """A device of `slots` held and set as `PLACED_DEVICE` (None where there are none) for the `with` block,
    and entered as this thread's Keras device."""
    with slots.taken() as device:
        token = PLACED_DEVICE.set(device)
        try:
            with on_placed_device():
                yield device
        finally:
            PLACED_DEVICE.reset(token)


@contextmanager
def on_placed_device() -> Iterator[str | None]:
    """`keras.device(PLACED_DEVICE)` in the calling thread (device scopes are per thread); nothing where no
    device was given. Code that trains in a thread of its own enters it there."""
    device = PLACED_DEVICE.get()
    if device is None:
        yield None
        return
    with keras.device(device):
        yield device


def built_under_strategy(data: Any) -> bool:
    """Whether `data` is a Keras model built under a `tf.distribute` strategy: its devices are its recipe's."""
    return isinstance(data, keras.Model) and getattr(data, "_distribute_strategy", None) is not None


def on_device(data: Any, device: str | None) -> Any:
    """`data`, where it is a Keras model, made again under `keras.device(device)` with its weights and compiled
    state (its variables then live there); anything else, or any data where `device` is None, as it is."""
    if device is None or not isinstance(data, keras.Model):
        return data
    with keras.device(device):
        return pickle.loads(pickle.dumps(data))  # a model this run made, never downloaded data


def cpu_threads_env(cores: int) -> dict[str, str]:
    """The environment that lets a worker's numerical libraries use `cores` threads (a Dask nanny sets them to 1)."""
    return {name: str(max(1, cores)) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def gpu_worker_env(gpu: str, cores: int) -> dict[str, str]:
    """The environment of the worker pinned to `gpu`: it sees that GPU only, allocates GPU memory as it needs
    it, and uses `cores` CPU threads."""
    return {"CUDA_VISIBLE_DEVICES": gpu, "TF_FORCE_GPU_ALLOW_GROWTH": "true", **cpu_threads_env(cores)}


def gpu_worker_memory_limit(workers: int) -> int:
    """Bytes of RAM each of `workers` GPU workers may hold: an equal share of the machine's.

    Dask's default for a one-thread worker is the RAM divided by the cores (4 GB of 256 on 64 cores),
    and its nanny restarts a worker that goes past 95% of its limit: a training's data would not fit.
    """
    return MEMORY_LIMIT // max(1, workers)


def local_cluster(gpus: list[str] | None = None) -> SpecCluster:
    """A cluster of this machine: a worker per GPU in `gpus` (default: `visible_gpus()`), each pinned to
    its GPU with a share of the cores, or else one worker with all the cores. Each worker runs one node
    at a time."""
    gpus = visible_gpus() if gpus is None else gpus
    cores = os.cpu_count() or 1
    if not gpus:
        return LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=DASHBOARD_ADDRESS,
            env=cpu_threads_env(cores),
        )
    return SpecCluster(
        scheduler={"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": DASHBOARD_ADDRESS}},
        workers={
            f"gpu-{gpu}": {
                "cls": Nanny,
                "options": {
                    "nthreads": 1,
                    "host": "127.0.0.1",
                    "env": gpu_worker_env(gpu, cores // len(gpus)),
                    "memory_limit": gpu_worker_memory_limit(len(gpus)),
                },
            }
            for gpu in gpus
        },
    )


class KerasClasses(WorkerPlugin):
    """Registers convbench's Keras classes in every worker as it joins, before it unpickles a model that
    another worker built (an untrained model on its way to training)."""

    name = "convbench-keras-classes"

    def setup(self, worker) -> None:
        import_custom_objects()


@dataclass
class NodeOutcome:
    """What a node's task leaves on its worker: the outputs the catalog keeps in memory, and its report."""

    node: str
    worker: str
    gpus: list[str]  # the GPUs the worker sees (`visible_gpus`)
    device: str | None  # the device the node ran on (`DeviceSlots`), None for the worker's default
    seconds: float
    records: list[dict[str, Any]]
    memory_outputs: dict[str, Any] = field(default_factory=dict)

    def report(self) -> NodeOutcome:
        """This outcome without its data: what the runner's process gathers."""
        return NodeOutcome(self.node, self.worker, self.gpus, self.device, self.seconds, self.records)

    def where(self) -> str:
        """The worker's address, its GPUs where it sees any, and the device the node ran on where it was
        placed: `tcp://10.0.0.2:40321 (GPU 1)`, `tcp://10.0.0.3:40321 (GPU 0,1; on gpu:1)`."""
        details = [f"GPU {','.join(self.gpus)}"] if self.gpus else []
        details += [f"on {self.device}"] if self.device else []
        return f"{self.worker} ({'; '.join(details)})" if details else self.worker


def node_process_hook_manager() -> tuple[pluggy.PluginManager, MlflowNodeTrackingHook]:
    """A hook manager with Kedro's hook specs and the hooks that run in the node's process."""
    manager = pluggy.PluginManager(markers.HOOK_NAMESPACE)
    for spec in (specs.NodeSpecs, specs.PipelineSpecs, specs.DataCatalogSpecs, specs.DatasetSpecs):
        manager.add_hookspecs(spec)
    tracking = MlflowNodeTrackingHook()
    manager.register(tracking)
    return manager, tracking


@dataclass(frozen=True)
class RunContext:
    """What every node's task needs to know of the `kedro run` it belongs to."""

    memory: frozenset[str]  # the datasets kept in memory, which travel as task results
    run_link: RunLink | None  # the MLflow run to log into
    run_id: str | None  # Kedro's session id
    is_async: bool
    logging_config: dict[str, Any]  # the project's, applied once in each worker process
    origin_pid: int  # the `kedro run` process: a worker inside it (an in-process cluster) keeps its logging


_configured_logging: list[bool] = []


def _configure_worker_logging(context: RunContext) -> None:
    """Applies the project's logging configuration in this worker process, once."""
    if os.getpid() != context.origin_pid and not _configured_logging:
        from kedro.framework.project import configure_logging

        configure_logging(context.logging_config)
        _configured_logging.append(True)


def run_node(node: Node, catalog: CatalogProtocol, context: RunContext, *upstream: NodeOutcome) -> NodeOutcome:
    """Runs `node` on this worker, on a device of its own where the worker spreads its nodes over several
    (`DeviceSlots`): its in-memory inputs from the `upstream` outcomes (a Keras model moved to that device),
    its hooks here, its MLflow logging into the `kedro run`'s run.

    Not placed: a `FANS_OUT_TAG` node (its tasks are, `on_every_worker`) and a node given a model built under
    a `distribute` strategy. A placed node loads and saves its datasets in its own thread, `--async` or not.
    """
    _configure_worker_logging(context)
    worker = get_worker()
    inputs = {
        name: data for outcome in upstream for name, data in outcome.memory_outputs.items() if name in node.inputs
    }
    spread = FANS_OUT_TAG not in node.tags and not any(map(built_under_strategy, inputs.values()))
    with placed(device_slots(worker.state.nthreads) if spread else NO_SLOTS) as device:
        for name, data in inputs.items():
            catalog.save(name, on_device(data, device))
        hook_manager, tracking = node_process_hook_manager()
        started = time.perf_counter()
        task = Task(
            node=node,
            catalog=catalog,
            is_async=context.is_async and device is None,
            hook_manager=hook_manager,
            run_id=context.run_id,
        )
        execute = functools.partial(on_placed_device_execute, task)
        if FANS_OUT_TAG not in node.tags:
            in_run(context.run_link, execute)
        else:
            token = CLUSTER.set(distributed.get_client())
            distributed.secede()
            try:
                in_run(context.run_link, execute)
            finally:
                distributed.rejoin()
                CLUSTER.reset(token)
    return NodeOutcome(
        node=node.name,
        worker=worker.address,
        gpus=worker_gpus(),
        device=device,
        seconds=time.perf_counter() - started,
        records=tracking.records,
        memory_outputs={name: catalog.load(name) for name in node.outputs if name in context.memory},
    )


def on_placed_device_execute(task: Task) -> Node:
    """`task.execute()` under `on_placed_device()` (nothing where no device was given), entered in the thread
    that runs it."""
    with on_placed_device():
        return task.execute()


Result = TypeVar("Result")


def on_every_worker(task: Callable[[int, Any], Result], data: Any) -> list[Result] | None:
    """Runs `task(index, data)` on each worker of the Dask cluster, all at once (index 0, 1, ...), and returns
    their results; None unless called from a `FANS_OUT_TAG` node that the DaskRunner runs.

    A worker that spreads its nodes over several devices (`DeviceSlots`) runs one task per device, each
    placed on its own (`PLACED_DEVICE`; a task that trains in a thread of its own enters
    `on_placed_device()` there). `data` is sent once to every worker, from this worker directly. The
    calling node has left its worker's thread (`run_node`), so its own worker runs its share too. A
    worker that dies has its tasks run again elsewhere.
    """
    client = CLUSTER.get()
    if client is None:
        return None
    tasks_per_worker = client.run(device_count)
    [shared] = client.scatter([data], broadcast=True, direct=True)
    addresses = [
        address for address in client.scheduler_info()["workers"] for _ in range(tasks_per_worker.get(address, 1))
    ]
    futures = [
        client.submit(placed_call, task, index, shared, workers=[address], allow_other_workers=True, pure=False)
        for index, address in enumerate(addresses)
    ]
    return client.gather(futures)


def device_count(dask_worker) -> int:
    """How many tasks of `on_every_worker` this worker runs: one per device it spreads work over, at least one."""
    return max(1, len(device_slots(dask_worker.state.nthreads).devices))


def placed_call(task: Callable[[int, Any], Result], index: int, data: Any) -> Result:
    """`task(index, data)` on a device of this worker's own (`placed`), where it has devices to spread over."""
    with placed(device_slots(get_worker().state.nthreads)):
        return task(index, data)


REPORT_PRIORITY = 10
"""Dask priority of the task that fetches a node's report: above the nodes' own tasks (0)."""


def erred_on(client: Client, key: str) -> str | None:
    """The worker on which task `key` raised, as the scheduler remembers it (None where it does not)."""

    def lookup(dask_scheduler, key=key) -> str | None:
        task = dask_scheduler.tasks.get(key)
        return min(getattr(task, "erred_on", None) or [None], key=str)

    try:
        return client.run_on_scheduler(lookup)
    except Exception:  # the record of a failure is best effort; the node's own error is what is raised
        return None


def report_of(outcome: NodeOutcome) -> NodeOutcome:
    """`outcome.report()`, as a task: it runs where the outcome is."""
    return outcome.report()


def node_catalog(catalog: CatalogProtocol, node: Node) -> DataCatalog:
    """The datasets `node` loads, saves and confirms, in a catalog of their own (what its task carries); the
    in-memory ones are still empty here, whatever their copy mode."""
    names = {*node.inputs, *node.outputs, *node.confirms}
    return DataCatalog(datasets={name: catalog.get(name, fallback_to_runtime_pattern=True) for name in names})


def memory_datasets(pipeline: Pipeline, catalog: CatalogProtocol) -> frozenset[str]:
    """The datasets the pipeline's nodes make that the catalog keeps in memory (they travel between workers)."""
    made = set(pipeline.all_outputs())
    return frozenset(
        name for name in made if isinstance(catalog.get(name, fallback_to_runtime_pattern=True), MemoryDataset)
    )


class DaskRunner(AbstractRunner):
    """Runs each node as a task on a `dask.distributed` cluster (see the module's docstring).

    Args:
        address: the scheduler to join (`tcp://host:8786`); default `DASK_SCHEDULER_ADDRESS`, else a
            cluster of this machine (`local_cluster`).
        is_async: load and save each node's datasets in threads (Kedro's `--async`).
    """

    def __init__(self, address: str | None = None, is_async: bool = False) -> None:
        super().__init__(is_async=is_async)
        self._address = address or os.environ.get(SCHEDULER_ADDRESS_ENV) or None

    def _get_executor(self, max_workers: int) -> None:
        """No executor: the cluster runs the nodes (`_run`)."""
        return None

    def _client(self, stack: ExitStack) -> Client:
        if self._address:
            logger.info("Joining the Dask cluster at %s", self._address)
            return stack.enter_context(Client(self._address))
        cluster = stack.enter_context(local_cluster())
        return stack.enter_context(Client(cluster))

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: pluggy.PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        from kedro.framework.project import LOGGING

        context = RunContext(
            memory=memory_datasets(pipeline, catalog),
            run_link=active_run_link(),
            run_id=run_id,
            is_async=self._is_async,
            logging_config=dict(LOGGING),
            origin_pid=os.getpid(),
        )
        with ExitStack() as stack:
            client = self._client(stack)
            info = client.scheduler_info()
            logger.info(
                "Dask: %d worker(s), %d thread(s); dashboard %s",
                len(info["workers"]),
                sum(worker["nthreads"] for worker in info["workers"].values()),
                client.dashboard_link if "dashboard" in info["services"] else "none (the scheduler runs without one)",
            )
            client.register_plugin(KerasClasses())
            self._run_on(client, pipeline, catalog, context, hook_manager)

    def _run_on(
        self,
        client: Client,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        context: RunContext,
        hook_manager: pluggy.PluginManager | None,
    ) -> None:
        """Submits each node once its upstream nodes have ended, logs each as it ends, and `node_runs.json`.

        A task depends on another only for the in-memory datasets it reads, and a node's task is let go
        once the nodes that read them have ended, so a worker lost later makes no finished node run
        again. On a failure, the nodes not started are cancelled and the node's error is raised.
        """
        token = context.run_id or uuid.uuid4().hex  # task keys unique to this run on a shared cluster
        dependencies = pipeline.node_dependencies
        readers = {
            node: {child for child in pipeline.nodes if set(child.inputs) & set(node.outputs) & context.memory}
            for node in pipeline.nodes
        }
        todo, done = list(pipeline.nodes), set()
        held: dict[Node, Future] = {}  # tasks whose in-memory outputs a node yet to end reads
        running: dict[Future, Node] = {}
        outcome_keys: dict[Node, str] = {}
        records: list[dict[str, Any]] = []
        try:
            while todo or running:
                for node in [node for node in todo if dependencies[node] <= done]:
                    todo.remove(node)
                    self._log_parameters(node, catalog, hook_manager, context.run_id)
                    outcome = client.submit(
                        run_node,
                        node,
                        node_catalog(catalog, node),
                        context,
                        *[held[parent] for parent in dependencies[node] if node in readers[parent]],
                        key=f"{node.name}-{token}",
                        pure=False,
                    )
                    if readers[node]:
                        held[node] = outcome
                    # Before any other task of the worker that holds `outcome`: it tells this process the node
                    # has ended, so the nodes after it are submitted without waiting on a training there.
                    running[client.submit(report_of, outcome, pure=False, priority=REPORT_PRIORITY)] = node
                    outcome_keys[node] = outcome.key  # the key alone: holding the future would keep its data
                if not running:
                    raise RuntimeError(f"No node can start: {sorted(node.name for node in todo)} wait on each other")
                for future in self._next_ended(client, list(running)):
                    node = running.pop(future)
                    try:
                        report = future.result()
                    except Exception:
                        records.append(
                            {"node": node.name, "status": "failed", "worker": erred_on(client, outcome_keys[node])}
                        )
                        raise
                    done.add(node)
                    records.extend(
                        {**record, "worker": report.worker, "gpus": report.gpus, "device": report.device}
                        for record in report.records
                    )
                    logger.info(
                        "Completed node %s on %s in %.1f s (%d of %d)",
                        report.node,
                        report.where(),
                        report.seconds,
                        len(done),
                        len(pipeline.nodes),
                    )
                    for parent in dependencies[node]:
                        if parent in held and readers[parent] <= done:
                            del held[parent]
        except BaseException:
            client.cancel([*running, *held.values()])
            self._suggest_resume_scenario(pipeline, done, catalog)
            raise
        finally:
            log_node_runs(records)

    @staticmethod
    def _next_ended(client: Client, futures: list[Future]) -> set[Future]:
        """The futures of `futures` that have ended, once at least one has; raises if the cluster has had no
        worker for `NO_WORKERS_TIMEOUT_S`."""
        without_workers_since = None
        while True:
            try:
                return distributed.wait(futures, timeout=WAIT_STEP_S, return_when="FIRST_COMPLETED").done
            except TimeoutError:
                if client.scheduler_info()["workers"]:
                    without_workers_since = None
                    continue
                without_workers_since = without_workers_since or time.monotonic()
                if time.monotonic() - without_workers_since > NO_WORKERS_TIMEOUT_S:
                    raise RuntimeError(
                        f"The Dask cluster at {client.scheduler.address} has had no worker for "
                        f"{NO_WORKERS_TIMEOUT_S:.0f} s: start workers (dask worker {client.scheduler.address}), "
                        "then rerun; trainings resume from their checkpoints"
                    ) from None

    @staticmethod
    def _log_parameters(
        node: Node, catalog: CatalogProtocol, hook_manager: pluggy.PluginManager | None, run_id: str | None
    ) -> None:
        """Calls this process's `before_node_run` hooks (kedro-mlflow's logs the node's parameters) with the
        node's parameters; the hooks that time the node run on its worker instead."""
        if not isinstance(hook_manager, pluggy.PluginManager):  # none, or Kedro's null manager
            return
        here = hook_manager.subset_hook_caller(
            "before_node_run",
            remove_plugins=[plugin for plugin in hook_manager.get_plugins() if isinstance(plugin, NODE_PROCESS_HOOKS)],
        )
        parameters = {
            name: catalog.load(name) for name in node.inputs if name.startswith("params:") or name == "parameters"
        }
        here(node=node, catalog=catalog, inputs=parameters, is_async=False, run_id=run_id)
