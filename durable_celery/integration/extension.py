"""``Durable(app)``: the one object a Celery project adds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, overload

from celery import Celery, signals

from ..codec import Codec, TypeRegistry
from ..config import DurableConfig
from ..errors import ConfigurationError
from ..replay.events import Event
from ..runtime.core import Runtime
from ..runtime.registry import Registry
from ..store import EventStore, open_store
from ..workflow.definition import WorkflowDefinition
from ..workflow.handle import RunHandle
from ..workflow.policy import RetryPolicy
from ..workflow.step import StepDefinition
from . import bootsteps
from .canvas import install_canvas, run_canvas
from .content import accept_binary
from .dispatcher import CeleryDispatcher
from .routing import install_router
from .tasks import register_orchestrator, register_step_task

__all__ = ["Durable"]

P = ParamSpec("P")
R = TypeVar("R")

_STEP_TASK_OPTIONS = (
    "rate_limit",
    "time_limit",
    "soft_time_limit",
    "base",
    "priority",
    "routing_key",
    "exchange",
    "ignore_result",
    "serializer",
    "typing",
    "autoretry_for",
    "expires",
    "track_started",
    "bind",
)


class Durable:
    """Durable workflows for one Celery app.

    Installs the orchestrator task, one Celery task per step, a worker bootstep that fires durable
    timers, and per-process cache resets after fork. Settings are ``app.conf.durable_*``.
    """

    def __init__(
        self, app: Celery, *, store: EventStore | None = None, types: TypeRegistry | None = None
    ) -> None:
        self.app = app
        self.registry = Registry()
        self.types = types or TypeRegistry()
        self._store = store
        self._runtime: Runtime | None = None
        self._lock = threading.Lock()
        self.orchestrate_task = register_orchestrator(app, self)
        # Durable's own settings are read when the runtime is built (DurableConfig holds their
        # defaults): Celery's add_defaults would put defaults in front of a config module's
        # values. What Durable changes in the app's settings is applied when the configuration
        # is loaded, and again when Celery reloads it (config_from_object after Durable(app)
        # rebuilds app.conf without changes made before).
        app.on_after_configure.connect(self._configure_app, weak=False)
        if app.configured:
            self._configure_app()
        self.canvas_workflow: Any = None
        install_canvas(self)
        bootsteps.install(app, self)
        uid = f"durable_celery:{id(self)}"
        signals.worker_process_init.connect(self._after_fork, weak=False, dispatch_uid=uid)
        app._durable_celery = self  # found by the CLI

    @classmethod
    def of(cls, app: Celery) -> Durable:
        """The Durable installed on ``app`` (used by the CLI)."""
        durable = getattr(app, "_durable_celery", None)
        if durable is None:
            raise ConfigurationError(
                f"app {app.main!r} has no Durable: add `durable = Durable(app)` to the module "
                "that defines the Celery app"
            )
        return durable  # type: ignore[no-any-return]

    # -- the runtime, built on first use (app.conf may be configured after Durable(app)) ----------
    @property
    def config(self) -> DurableConfig:
        return self.runtime.config

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            with self._lock:
                if self._runtime is None:
                    self._runtime = self._build_runtime()
        return self._runtime

    def _build_runtime(self) -> Runtime:
        config = DurableConfig.from_mapping(self.app.conf, self.app.conf.broker_url)
        store = self._store
        if store is None:
            if not config.redis_url:
                raise ConfigurationError(
                    "durable_celery needs Redis for its event log: set app.conf.durable_redis_url "
                    "(the broker URL is used when the broker is Redis)"
                )
            store = open_store(config.redis_url, config.key_prefix)
        codec = Codec(
            config.encryption_keys,
            compression_threshold=config.compression_threshold,
            require_encryption=config.require_encryption,
            registry=self.types,
        )
        dispatcher = CeleryDispatcher(self.app, self.orchestrate_task, config.orchestrator_queue)
        return Runtime(config, store, codec, self.registry, dispatcher)

    def _configure_app(self, **_: Any) -> None:
        install_router(self.app, self)
        accept_binary(self.app)

    def _after_fork(self, **_: Any) -> None:
        # The parent's timer thread builds the runtime under this lock, possibly while the pool
        # forks: a child inheriting it locked, with no thread left to release it, would hang on
        # its first task. Only this thread exists in the child, so a fresh lock is safe.
        self._lock = threading.Lock()
        if self._runtime is not None:
            self._runtime.reset_process_caches()

    # -- decorators -------------------------------------------------------------------------------
    @overload
    def step(self, fn: Callable[P, R]) -> StepDefinition[P, R]: ...

    @overload
    def step(
        self,
        fn: None = None,
        *,
        name: str | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        max_backoff: float | None = None,
        jitter: bool | None = None,
        queue: str | None = None,
        execution: str | None = None,
        **task_options: Any,
    ) -> Callable[[Callable[P, R]], StepDefinition[P, R]]: ...

    def step(
        self,
        fn: Any = None,
        *,
        name: str | None = None,
        retries: int | None = None,
        backoff: float | None = None,
        max_backoff: float | None = None,
        jitter: bool | None = None,
        queue: str | None = None,
        execution: str | None = None,
        **task_options: Any,
    ) -> Any:
        """Make a function a durable step (and a real Celery task: ``step.task``).

        Celery task options (``rate_limit``, ``time_limit``, ``soft_time_limit``, ``base``...)
        pass through to the step's task.
        """
        unknown = set(task_options) - set(_STEP_TASK_OPTIONS)
        if unknown:
            raise TypeError(
                f"@durable.step got unknown option(s) {sorted(unknown)}; durable options are "
                "name, retries, backoff, max_backoff, jitter, queue, execution, and the Celery "
                f"task options {', '.join(_STEP_TASK_OPTIONS)}"
            )

        def decorate(f: Callable[P, R]) -> StepDefinition[P, R]:
            conf = self.app.conf
            policy = RetryPolicy(
                retries=_pick(retries, conf.get("durable_step_retries"), 3),
                backoff=_pick(backoff, conf.get("durable_step_backoff"), 1.0),
                max_backoff=_pick(max_backoff, conf.get("durable_step_max_backoff"), 600.0),
                jitter=_pick(jitter, conf.get("durable_step_jitter"), True),
            )
            definition: StepDefinition[P, R] = StepDefinition(
                f,
                name=name or f"{f.__module__}.{f.__qualname__}",
                policy=policy,
                execution=execution,
                queue=queue,
                task_options=task_options,
            )
            definition.task = register_step_task(self.app, self, definition)
            self.registry.add_step(definition)
            return definition

        return decorate(fn) if fn is not None else decorate

    @overload
    def workflow(self, fn: Callable[P, R]) -> WorkflowDefinition[P, R]: ...

    @overload
    def workflow(
        self, fn: None = None, *, name: str | None = None
    ) -> Callable[[Callable[P, R]], WorkflowDefinition[P, R]]: ...

    def workflow(self, fn: Any = None, *, name: str | None = None) -> Any:
        """Make a function a durable workflow: ``wf.start(...)`` returns a :class:`RunHandle`."""

        def decorate(f: Callable[P, R]) -> WorkflowDefinition[P, R]:
            definition: WorkflowDefinition[P, R] = WorkflowDefinition(
                f, name=name or f"{f.__module__}.{f.__qualname__}", starter=_LazyClient(self)
            )
            self.registry.add_workflow(definition)
            return definition

        return decorate(fn) if fn is not None else decorate

    def register_type(self, cls: type, **options: Any) -> None:
        """Let values of ``cls`` cross the log (dataclasses and pydantic models by default)."""
        self.types.register(cls, **options)

    # -- runs -------------------------------------------------------------------------------------
    def start(
        self, workflow: str, *args: Any, run_id: str | None = None, **kwargs: Any
    ) -> RunHandle:
        """Start a workflow by its registered name."""
        return self.runtime.client.start_by_name(workflow, args, kwargs, run_id)

    def run(self, run_id: str) -> RunHandle:
        """A handle on an existing run."""
        record = self.runtime.store.get_run(run_id)
        workflow = record.workflow if record else "?"
        self.runtime.client.run_status(run_id)  # RunNotFound when it does not exist
        return RunHandle(run_id, workflow, self.runtime.client, created=False)

    def history(self, run_id: str) -> list[Event]:
        return self.runtime.client.history(run_id)

    def send_event(
        self,
        key: str,
        payload: Any = None,
        *,
        dedupe_id: str | None = None,
        buffer: bool = False,
        buffer_ttl: float = 86400.0,
    ) -> bool:
        """Deliver ``payload`` to the run waiting in ``wait_for_event(key)``, from any process.

        Raises ``EventNotDelivered`` when no run waits, unless ``buffer=True`` (kept for the next
        wait on the key for ``buffer_ttl`` seconds). With ``dedupe_id``, a repeated send returns
        False and delivers nothing.
        """
        return self.runtime.client.send_event(
            key, payload, dedupe_id=dedupe_id, buffer=buffer, buffer_ttl=buffer_ttl
        )

    def signal(
        self, run_id: str, name: str, payload: Any = None, *, dedupe_id: str | None = None
    ) -> bool:
        """Send a named signal to one run; its workflow takes it with ``receive(name)``."""
        return self.runtime.client.signal(run_id, name, payload, dedupe_id=dedupe_id)

    def run_canvas(self, sig: Any, *, run_id: str | None = None) -> RunHandle:
        """Run a Celery ``chain``/``group``/``chord`` (or one task signature) durably."""
        return run_canvas(self, sig, run_id)

    def map(self, step: StepDefinition[Any, R], items: Any) -> Any:
        """Inside a workflow: run ``step`` over ``items`` in parallel; results in input order.

        In an async workflow it returns an awaitable: ``await durable.map(step, items)``.
        """
        import asyncio

        from ..replay.context import require_context
        from ..workflow.concurrency import gather

        calls = [step.defer(item) for item in items]
        if require_context("durable.map()").loop is not None:
            return asyncio.gather(*calls)
        return gather(*calls)


class _LazyClient:
    """Resolves the runtime when a run starts, not when the workflow is decorated."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable

    def start_run(self, workflow: Any, args: Any, kwargs: Any, run_id: str | None) -> RunHandle:
        return self.durable.runtime.client.start_run(workflow, args, kwargs, run_id)


def _pick(value: Any, configured: Any, default: Any) -> Any:
    if value is not None:
        return value
    return configured if configured is not None else default
