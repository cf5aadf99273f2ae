"""A pool of typed resources that tasks take atomically and give back.

Built the way asyncio builds `Semaphore`: FIFO waiters (ordered by priority first), a waiter
cancelled after it was granted gives back what it took, and the invariant is simple:

    for every resource:  0 <= used <= capacity     (in integer milli-units, so no float drift)

Fairness: a request is granted only if it fits *and* it shares no resource with a request
queued ahead of it. A big request at the head therefore cannot be starved by a stream of
small ones on the same resource, while requests for unrelated resources still flow past it.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dukat.errors import FieldViolation, ValidationError

__all__ = ["ResourcePool", "ResourceRequirement", "ResourceType", "ResourceUsage"]

_log = logging.getLogger(__name__)

MILLI = 1000  # resources are counted in thousandths: 0.001 is the smallest amount


class ResourceType(enum.Enum):
    CPU = "cpu"
    MEMORY = "memory"
    NETWORK = "network"
    DISK = "disk"
    GPU = "gpu"
    CUSTOM = "custom"  # a named resource: licence seats, a rate-limited API, a concurrency group


BUILTIN_RESOURCES = tuple(t for t in ResourceType if t is not ResourceType.CUSTOM)
_BUILTIN_KEYS = frozenset(t.value for t in BUILTIN_RESOURCES)


@dataclass(frozen=True, slots=True)
class ResourceRequirement:
    """An amount of one resource a task needs while it runs.

    Built-in types default to a capacity of 1.0, so `ResourceRequirement(ResourceType.CPU,
    0.5)` is half of the host's CPU share. CUSTOM resources need a `name`.
    """

    type: ResourceType
    amount: float
    name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.type, ResourceType):
            raise ValidationError(f"resource type must be a ResourceType, not {self.type!r}")
        if self.type is ResourceType.CUSTOM:
            if not self.name:
                raise ValidationError("a CUSTOM resource requirement needs a name")
        elif self.name is not None:
            raise ValidationError(
                f"only CUSTOM resources take a name; {self.type.value} was given {self.name!r}"
            )
        _to_milli(self.amount, self.key)

    @property
    def key(self) -> str:
        """The resource's name in the pool: `cpu`, `memory`, ... or the custom name."""
        return self.name if self.type is ResourceType.CUSTOM else self.type.value  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    used: float
    capacity: float

    @property
    def available(self) -> float:
        # In milli-units, like the pool: 1.0 - 0.9 in floats is 0.09999999999999998.
        return (round(self.capacity * MILLI) - round(self.used * MILLI)) / MILLI


def _to_milli(amount: float, key: str) -> int:
    if (
        isinstance(amount, bool)
        or not isinstance(amount, (int, float))
        or not math.isfinite(amount)
    ):
        raise ValidationError(f"amount of {key!r} must be a finite number, not {amount!r}")
    if amount <= 0:
        raise ValidationError(f"amount of {key!r} must be positive, not {amount!r}")
    milli = round(amount * MILLI)
    if milli == 0:
        raise ValidationError(f"amount of {key!r} is below the resolution of 0.001: {amount!r}")
    return milli


class _Waiter:
    __slots__ = ("future", "need", "order", "task_id")

    def __init__(
        self,
        task_id: str,
        need: dict[str, int],
        order: tuple[int, int],
        future: asyncio.Future[dict[str, float]],
    ) -> None:
        self.task_id = task_id
        self.need = need
        self.order = order  # (-priority, arrival): smaller goes first
        self.future = future


class ResourcePool:
    """Capacities of typed and named resources, shared by the tasks that run.

    `capacities` maps a `ResourceType` (or its name) or a custom resource's name to its
    capacity. Built-in types not mentioned get 1.0; custom resources exist only if named here.
    """

    def __init__(self, capacities: Mapping[ResourceType | str, float] | None = None) -> None:
        self._capacity: dict[str, int] = {t.value: MILLI for t in BUILTIN_RESOURCES}
        for resource, capacity in (capacities or {}).items():
            key = resource.value if isinstance(resource, ResourceType) else str(resource)
            if key == ResourceType.CUSTOM.value or not key:
                raise ValidationError(f"a custom resource needs a name, not {resource!r}")
            if capacity == 0:
                self._capacity[key] = 0
            else:
                self._capacity[key] = _to_milli(capacity, key)
        self._used: dict[str, int] = dict.fromkeys(self._capacity, 0)
        self._held: dict[str, dict[str, int]] = {}
        self._waiters: list[_Waiter] = []  # kept sorted by .order
        self._waiting_ids: set[str] = set()
        self._arrival = itertools.count()
        self._listeners: list[Callable[[ResourcePool], None]] = []

    # -- validation -------------------------------------------------------------------------

    def check(
        self, requirements: Iterable[ResourceRequirement], *, task_id: str | None = None
    ) -> dict[str, int]:
        """Validate requirements against this pool; return what they need in milli-units.

        Raises `ValidationError` for an unknown custom resource or an amount above capacity:
        such a request could never be granted, so it must not wait.
        """
        need: dict[str, int] = {}
        last_index: dict[str, int] = {}  # the requirement that brought each total to its value
        whose = f"task {task_id!r} " if task_id is not None else ""
        for index, requirement in enumerate(requirements):
            key = requirement.key
            if key not in self._capacity:
                known = ", ".join(sorted(self._capacity))
                raise ValidationError(
                    f"{whose}needs unknown resource {key!r}; known: {known}",
                    task_id=task_id,
                    violations=[FieldViolation(f"resources[{index}].name", f"unknown {key!r}")],
                )
            need[key] = need.get(key, 0) + _to_milli(requirement.amount, key)
            last_index[key] = index
        for key, amount in need.items():
            if amount > self._capacity[key]:
                index = last_index[key]
                raise ValidationError(
                    f"{whose}needs {amount / MILLI:g} of {key!r} but its capacity is "
                    f"{self._capacity[key] / MILLI:g}",
                    task_id=task_id,
                    violations=[FieldViolation(f"resources[{index}].amount", "above capacity")],
                )
        return need

    # -- taking and giving back -------------------------------------------------------------

    def try_allocate(
        self, task_id: str, requirements: Iterable[ResourceRequirement], *, priority: int = 0
    ) -> dict[str, float] | None:
        """Take the resources now if they fit and nobody queued ahead needs them; else None."""
        need = self.check(requirements, task_id=task_id)
        self._check_not_holding(task_id)
        if self._can_take_now(need, (-priority, math.inf)):
            return self._take(task_id, need)
        return None

    async def allocate(
        self, task_id: str, requirements: Iterable[ResourceRequirement], *, priority: int = 0
    ) -> dict[str, float]:
        """Wait until all requirements fit, take them atomically, return what was taken."""
        future = self.reserve(task_id, requirements, priority=priority)
        try:
            return await future
        except asyncio.CancelledError:
            # Granted just before we were cancelled: give it back, nobody will use it.
            if future.done() and not future.cancelled():
                self.release_nowait(task_id)
            raise

    def reserve(
        self, task_id: str, requirements: Iterable[ResourceRequirement], *, priority: int = 0
    ) -> asyncio.Future[dict[str, float]]:
        """Queue a request; the future resolves with what was taken once it is granted.

        Cancelling the future withdraws the request. Once it has resolved, the resources are
        held by `task_id` until `release`.
        """
        need = self.check(requirements, task_id=task_id)
        self._check_not_holding(task_id)
        future: asyncio.Future[dict[str, float]] = asyncio.get_running_loop().create_future()
        order = (-priority, next(self._arrival))
        if self._can_take_now(need, order):
            future.set_result(self._take(task_id, need))
            return future
        waiter = _Waiter(task_id, need, order, future)
        self._insert(waiter)
        future.add_done_callback(lambda _: self._forget(waiter))
        return future

    async def release(self, task_id: str) -> dict[str, float]:
        """Give back everything `task_id` holds; returns what was given back."""
        return self.release_nowait(task_id)

    def release_nowait(self, task_id: str) -> dict[str, float]:
        held = self._held.pop(task_id, None)
        if held is None:
            return {}
        for key, amount in held.items():
            self._used[key] -= amount
        self._grant_waiters()
        self._notify()
        return {key: amount / MILLI for key, amount in held.items()}

    def set_capacity(self, resource: ResourceType | str, capacity: float) -> None:
        """Change the capacity of a resource, or add one (a cluster that grew or shrank).

        What tasks hold stays theirs: after a shrink below it, nothing more of the resource
        is granted until enough has been given back, so the pool is never over-allocated
        by a new grant. Queued requests that no longer fit wait for it to grow again (they
        were valid when accepted); `check` refuses new ones that cannot fit. A growth grants
        the waiters that fit now.
        """
        key = resource.value if isinstance(resource, ResourceType) else str(resource)
        if key == ResourceType.CUSTOM.value or not key:
            raise ValidationError(f"a custom resource needs a name, not {resource!r}")
        milli = 0 if capacity == 0 else _to_milli(capacity, key)
        if self._capacity.get(key) == milli:
            return
        self._capacity[key] = milli
        self._used.setdefault(key, 0)
        self._grant_waiters()
        self._notify()

    # -- looking ----------------------------------------------------------------------------

    def usage(self) -> dict[str, ResourceUsage]:
        return {
            key: ResourceUsage(self._used[key] / MILLI, capacity / MILLI)
            for key, capacity in self._capacity.items()
        }

    @property
    def capacities(self) -> dict[str, float]:
        return {key: capacity / MILLI for key, capacity in self._capacity.items()}

    def held_by(self, task_id: str) -> dict[str, float]:
        return {key: amount / MILLI for key, amount in self._held.get(task_id, {}).items()}

    @property
    def waiting(self) -> int:
        """Requests queued and not withdrawn."""
        return sum(1 for waiter in self._waiters if not waiter.future.done())

    def add_listener(self, listener: Callable[[ResourcePool], None]) -> None:
        """Call `listener(pool)` after every allocation and release (metrics, invariants)."""
        self._listeners.append(listener)

    def __repr__(self) -> str:
        parts = [
            f"{key} {self._used[key] / MILLI:g}/{capacity / MILLI:g}"
            for key, capacity in self._capacity.items()
            if self._used[key] or key not in _BUILTIN_KEYS
        ]
        return f"<ResourcePool {' '.join(parts) or 'idle'} waiters:{self.waiting}>"

    # -- inside -----------------------------------------------------------------------------

    def _check_not_holding(self, task_id: str) -> None:
        if task_id in self._waiting_ids:
            # Its request may have been withdrawn (future cancelled) and not yet forgotten:
            # `_forget` runs a loop iteration later. Purging now lets it ask again at once.
            self._grant_waiters()
        if task_id in self._held or task_id in self._waiting_ids:
            raise ValueError(f"task {task_id!r} already holds or awaits resources; release first")

    def _fits(self, need: dict[str, int]) -> bool:
        used, capacity = self._used, self._capacity
        return all(used[key] + amount <= capacity[key] for key, amount in need.items())

    def _can_take_now(self, need: dict[str, int], order: tuple[float, float]) -> bool:
        if not self._fits(need):
            return False
        # A withdrawn waiter (cancelled future, `_forget` not yet run) blocks nobody.
        return all(
            w.order > order or w.future.done() or need.keys().isdisjoint(w.need)
            for w in self._waiters
        )

    def _take(self, task_id: str, need: dict[str, int]) -> dict[str, float]:
        for key, amount in need.items():
            self._used[key] += amount
        self._held[task_id] = need
        self._notify()
        return {key: amount / MILLI for key, amount in need.items()}

    def _insert(self, waiter: _Waiter) -> None:
        index = len(self._waiters)
        while index and self._waiters[index - 1].order > waiter.order:
            index -= 1
        self._waiters.insert(index, waiter)
        self._waiting_ids.add(waiter.task_id)

    def _forget(self, waiter: _Waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._waiting_ids.discard(waiter.task_id)
            # A waiter that gave up may have been blocking others behind it.
            self._grant_waiters()

    def _grant_waiters(self) -> None:
        blocked: set[str] = set()
        still_waiting: list[_Waiter] = []
        for waiter in self._waiters:
            if waiter.future.done():
                self._waiting_ids.discard(waiter.task_id)
                continue
            if blocked.isdisjoint(waiter.need) and self._fits(waiter.need):
                self._waiting_ids.discard(waiter.task_id)
                waiter.future.set_result(self._take(waiter.task_id, waiter.need))
            else:
                blocked.update(waiter.need)
                still_waiting.append(waiter)
        self._waiters = still_waiting

    def _notify(self) -> None:
        # A listener that raises must not leave a grant half made (resources taken, future
        # never resolved): log it and go on.
        for listener in self._listeners:
            try:
                listener(self)
            except Exception:
                _log.exception("resource pool listener %r failed", listener)
