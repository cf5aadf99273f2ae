"""ResourcePool: exact, atomic, fair allocation that never waits for the impossible."""

from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dukat.core.resources import ResourcePool, ResourceRequirement, ResourceType, ResourceUsage
from dukat.errors import ValidationError
from tests.helpers import settle, wait_for

CPU, MEMORY, GPU, CUSTOM = (
    ResourceType.CPU,
    ResourceType.MEMORY,
    ResourceType.GPU,
    ResourceType.CUSTOM,
)


def cpu(amount: float) -> list[ResourceRequirement]:
    return [ResourceRequirement(CPU, amount)]


def need(*pairs: tuple[ResourceType, float]) -> list[ResourceRequirement]:
    return [ResourceRequirement(kind, amount) for kind, amount in pairs]


def licence(amount: float = 1) -> list[ResourceRequirement]:
    return [ResourceRequirement(CUSTOM, amount, name="licence")]


def start_allocating(
    pool: ResourcePool, task_id: str, requirements: list[ResourceRequirement], priority: int = 0
) -> asyncio.Task[dict[str, float]]:
    return asyncio.create_task(pool.allocate(task_id, requirements, priority=priority))


# -- capacities -----------------------------------------------------------------------------


def test_default_pool_has_each_builtin_resource_with_capacity_one():
    assert ResourcePool().capacities == {
        "cpu": 1.0,
        "memory": 1.0,
        "network": 1.0,
        "disk": 1.0,
        "gpu": 1.0,
    }


def test_default_pool_starts_unused():
    usage = ResourcePool().usage()
    assert set(usage) == {"cpu", "memory", "network", "disk", "gpu"}
    assert all(u == ResourceUsage(used=0.0, capacity=1.0) for u in usage.values())


def test_capacities_override_builtins_by_type_or_name_and_add_custom_resources():
    pool = ResourcePool({CPU: 4, "gpu": 2, "licence": 3})
    assert pool.capacities == {
        "cpu": 4.0,
        "memory": 1.0,
        "network": 1.0,
        "disk": 1.0,
        "gpu": 2.0,
        "licence": 3.0,
    }


@pytest.mark.parametrize("key", [CUSTOM, "custom", ""])
def test_a_custom_capacity_needs_a_real_name(key):
    with pytest.raises(ValidationError, match="custom resource needs a name"):
        ResourcePool({key: 1})


@pytest.mark.parametrize("capacity", [-1, math.nan, math.inf, "2", True])
def test_a_capacity_must_be_a_finite_non_negative_number(capacity):
    with pytest.raises(ValidationError):
        ResourcePool({"licence": capacity})


def test_a_zero_capacity_resource_exists_but_refuses_every_request():
    pool = ResourcePool({"gpu": 0})
    assert pool.capacities["gpu"] == 0.0
    with pytest.raises(ValidationError, match="capacity is 0"):
        pool.try_allocate("t", need((GPU, 0.1)))


# -- requirements ---------------------------------------------------------------------------


def test_requirement_key_is_the_type_name_or_the_custom_name():
    assert ResourceRequirement(CPU, 0.5).key == "cpu"
    assert ResourceRequirement(CUSTOM, 1, name="licence").key == "licence"


@pytest.mark.parametrize(
    "amount", [0, 0.0, -0.5, -1, math.nan, math.inf, -math.inf, True, "0.5", None]
)
def test_requirement_amount_must_be_a_positive_finite_number(amount):
    with pytest.raises(ValidationError, match="amount of 'cpu'"):
        ResourceRequirement(CPU, amount)


def test_requirement_below_the_milli_resolution_is_refused():
    with pytest.raises(ValidationError, match="resolution"):
        ResourceRequirement(CPU, 0.0004)


def test_requirement_is_a_value_error_so_callers_can_catch_the_builtin():
    with pytest.raises(ValueError):
        ResourceRequirement(CPU, -1)


def test_custom_requirement_needs_a_name():
    with pytest.raises(ValidationError, match="needs a name"):
        ResourceRequirement(CUSTOM, 1)
    with pytest.raises(ValidationError, match="needs a name"):
        ResourceRequirement(CUSTOM, 1, name="")


def test_only_custom_requirements_take_a_name():
    with pytest.raises(ValidationError, match="only CUSTOM resources take a name; cpu"):
        ResourceRequirement(CPU, 0.5, name="fast-cpu")


def test_requirement_type_must_be_a_resource_type():
    with pytest.raises(ValidationError, match="must be a ResourceType"):
        ResourceRequirement("cpu", 0.5)  # type: ignore[arg-type]


# -- exact accounting -----------------------------------------------------------------------


def test_ten_allocations_of_a_tenth_fill_the_pool_and_an_eleventh_does_not_fit():
    pool = ResourcePool()
    for index in range(10):
        assert pool.try_allocate(f"t{index}", cpu(0.1)) == {"cpu": 0.1}
    assert pool.try_allocate("t10", cpu(0.1)) is None
    assert pool.usage()["cpu"].used == 1.0
    assert pool.usage()["cpu"].available == 0.0


def test_amounts_whose_float_sum_drifts_above_capacity_still_fit_exactly():
    # In floats 0.1 + 0.2 + 0.7 == 1.0000000000000002 > 1.0.
    pool = ResourcePool()
    assert pool.try_allocate("a", cpu(0.1)) is not None
    assert pool.try_allocate("b", cpu(0.2)) is not None
    assert pool.try_allocate("c", cpu(0.7)) is not None
    assert pool.usage()["cpu"].used == 1.0


def test_available_is_exact_too():
    pool = ResourcePool()
    pool.try_allocate("a", cpu(0.9))
    assert pool.usage()["cpu"].available == 0.1


def test_amounts_are_rounded_to_the_thousandth_not_truncated():
    # 1.001 * 1000 is 1000.9999999999999 in floats; truncating would lose a thousandth.
    pool = ResourcePool({"licence": 2})
    assert pool.try_allocate("a", licence(1.001)) == {"licence": 1.001}
    assert pool.try_allocate("b", licence(0.999)) == {"licence": 0.999}
    assert pool.try_allocate("c", licence(0.001)) is None
    assert pool.usage()["licence"].used == 2.0


def test_releasing_everything_brings_usage_back_to_exactly_zero():
    pool = ResourcePool()
    for index in range(10):
        pool.try_allocate(f"t{index}", cpu(0.1))
    for index in range(10):
        pool.release_nowait(f"t{index}")
    assert pool.usage()["cpu"].used == 0.0


# -- try_allocate ---------------------------------------------------------------------------


def test_try_allocate_returns_what_it_took():
    pool = ResourcePool()
    taken = pool.try_allocate("t", need((CPU, 0.5), (MEMORY, 0.3)))
    assert taken == {"cpu": 0.5, "memory": 0.3}
    assert pool.held_by("t") == {"cpu": 0.5, "memory": 0.3}
    assert pool.usage()["memory"] == ResourceUsage(used=0.3, capacity=1.0)


def test_try_allocate_returns_none_and_takes_nothing_when_it_does_not_fit():
    pool = ResourcePool()
    pool.try_allocate("a", need((MEMORY, 0.8)))
    assert pool.try_allocate("b", need((CPU, 0.5), (MEMORY, 0.5))) is None
    assert pool.usage()["cpu"].used == 0.0
    assert pool.held_by("b") == {}


def test_requirements_on_the_same_resource_add_up():
    pool = ResourcePool()
    assert pool.try_allocate("t", cpu(0.3) + cpu(0.3)) == {"cpu": 0.6}
    assert pool.usage()["cpu"].used == 0.6


def test_requirements_that_add_up_above_capacity_are_refused_at_once():
    with pytest.raises(ValidationError, match=r"needs 1\.2 of 'cpu'"):
        ResourcePool().try_allocate("t", cpu(0.6) + cpu(0.6))


def test_a_custom_resource_with_capacity_four_is_a_concurrency_group_of_four():
    pool = ResourcePool({"licence": 4})
    for index in range(4):
        assert pool.try_allocate(f"t{index}", licence()) == {"licence": 1.0}
    assert pool.try_allocate("t4", licence()) is None


def test_a_task_cannot_hold_twice():
    pool = ResourcePool()
    pool.try_allocate("t", cpu(0.1))
    with pytest.raises(ValueError, match="'t' already holds or awaits resources; release first"):
        pool.try_allocate("t", cpu(0.1))
    assert pool.usage()["cpu"].used == 0.1


async def test_a_waiting_task_cannot_ask_again():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    waiter = start_allocating(pool, "t", cpu(0.5))
    await wait_for(lambda: pool.waiting == 1)
    with pytest.raises(ValueError, match="'t' already holds or awaits"):
        pool.try_allocate("t", need((GPU, 0.1)))
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


# -- errors at once, never a wait -----------------------------------------------------------


async def assert_refused_at_once(pool: ResourcePool, requirements, match: str) -> None:
    task = start_allocating(pool, "t", requirements)
    await asyncio.sleep(0)  # one step is all it may take
    assert task.done(), "an impossible request must not wait"
    with pytest.raises(ValidationError, match=match):
        task.result()
    assert pool.waiting == 0


async def test_amount_above_capacity_is_refused_at_once_naming_the_task():
    pool = ResourcePool()
    await assert_refused_at_once(
        pool, cpu(1.5), r"task 't' needs 1.5 of 'cpu' but its capacity is 1"
    )


async def test_amount_above_capacity_is_refused_even_while_the_pool_is_busy():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    await assert_refused_at_once(pool, cpu(2), "capacity")


async def test_unknown_custom_resource_is_refused_at_once_listing_the_known_ones():
    pool = ResourcePool({"licence": 2})
    await assert_refused_at_once(
        pool,
        [ResourceRequirement(CUSTOM, 1, name="seat")],
        "task 't' needs unknown resource 'seat'; known: cpu, disk, gpu, licence, memory, network",
    )


def test_refusal_carries_the_task_and_the_offending_field():
    pool = ResourcePool()
    requirements = need((MEMORY, 0.1), (MEMORY, 0.1), (CPU, 2))
    with pytest.raises(ValidationError) as caught:
        pool.try_allocate("big", requirements)
    assert caught.value.task_id == "big"
    assert [v.field for v in caught.value.violations] == ["resources[2].amount"]


def test_unknown_resource_refusal_points_at_its_requirement():
    pool = ResourcePool()
    with pytest.raises(ValidationError) as caught:
        pool.try_allocate("t", [*cpu(0.1), ResourceRequirement(CUSTOM, 1, name="seat")])
    assert [v.field for v in caught.value.violations] == ["resources[1].name"]


def test_check_validates_without_taking_anything():
    pool = ResourcePool()
    assert pool.check(need((CPU, 0.5), (GPU, 0.25))) == {"cpu": 500, "gpu": 250}
    assert pool.usage()["cpu"].used == 0.0
    with pytest.raises(ValidationError, match=r"^needs 2 of 'cpu'"):
        pool.check(cpu(2))


# -- allocate: waiting and granting ---------------------------------------------------------


async def test_allocate_takes_at_once_when_it_fits():
    pool = ResourcePool()
    assert await pool.allocate("t", cpu(0.5)) == {"cpu": 0.5}
    assert pool.waiting == 0


async def test_allocate_waits_and_is_granted_when_enough_is_released():
    pool = ResourcePool()
    pool.try_allocate("a", cpu(0.5))
    waiter = start_allocating(pool, "b", cpu(0.6))
    await settle()
    assert not waiter.done()
    assert pool.waiting == 1
    assert pool.usage()["cpu"].used == 0.5

    assert await pool.release("a") == {"cpu": 0.5}
    assert await waiter == {"cpu": 0.6}
    assert pool.held_by("b") == {"cpu": 0.6}
    assert pool.waiting == 0


async def test_allocation_is_all_or_nothing_while_waiting():
    pool = ResourcePool()
    pool.try_allocate("a", need((MEMORY, 0.8)))
    waiter = start_allocating(pool, "b", need((CPU, 0.5), (MEMORY, 0.5)))
    await settle()
    # The CPU part fits but is not taken on its own.
    assert pool.usage()["cpu"].used == 0.0
    assert pool.try_allocate("c", cpu(1.0)) is None  # b is queued for CPU ahead of c
    pool.release_nowait("a")
    assert await waiter == {"cpu": 0.5, "memory": 0.5}


async def test_waiters_are_served_first_come_first_served():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    first = start_allocating(pool, "first", cpu(0.6))
    await wait_for(lambda: pool.waiting == 1)
    second = start_allocating(pool, "second", cpu(0.6))
    await wait_for(lambda: pool.waiting == 2)

    pool.release_nowait("holder")
    assert await first == {"cpu": 0.6}
    await settle()
    assert not second.done()
    pool.release_nowait("first")
    assert await second == {"cpu": 0.6}


async def test_one_release_grants_every_waiter_that_now_fits():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    waiters = [start_allocating(pool, f"w{i}", cpu(0.3)) for i in range(4)]
    await wait_for(lambda: pool.waiting == 4)
    pool.release_nowait("holder")
    await settle()
    assert [w.done() for w in waiters] == [True, True, True, False]
    assert pool.usage()["cpu"].used == 0.9
    waiters[3].cancel()
    await settle()


async def test_higher_priority_waiter_goes_before_earlier_lower_priority_ones():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    low = start_allocating(pool, "low", cpu(0.6), priority=0)
    await wait_for(lambda: pool.waiting == 1)
    high = start_allocating(pool, "high", cpu(0.6), priority=5)
    await wait_for(lambda: pool.waiting == 2)

    pool.release_nowait("holder")
    assert await high == {"cpu": 0.6}
    await settle()
    assert not low.done()
    pool.release_nowait("high")
    assert await low == {"cpu": 0.6}


async def test_equal_priorities_keep_arrival_order():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    order: list[str] = []

    async def take(task_id: str) -> None:
        await pool.allocate(task_id, cpu(1), priority=3)
        order.append(task_id)
        await pool.release(task_id)

    tasks = []
    for count, name in enumerate(["a", "b", "c"], start=1):
        tasks.append(asyncio.create_task(take(name)))
        await wait_for(lambda n=count: pool.waiting == n)
    pool.release_nowait("holder")
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c"]


async def test_try_allocate_with_higher_priority_may_pass_a_lower_priority_waiter():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(0.5))
    low = start_allocating(pool, "low", cpu(0.6), priority=0)
    await wait_for(lambda: pool.waiting == 1)
    assert pool.try_allocate("same", cpu(0.1), priority=0) is None
    assert pool.try_allocate("urgent", cpu(0.1), priority=1) == {"cpu": 0.1}
    low.cancel()
    await settle()


async def test_large_request_at_the_head_is_not_starved_by_small_ones():
    pool = ResourcePool()
    pool.try_allocate("small-0", cpu(0.5))
    big = start_allocating(pool, "big", cpu(1.0))
    await wait_for(lambda: pool.waiting == 1)

    # Small requests keep arriving; each would fit, but none may pass the big one.
    smalls = [start_allocating(pool, f"small-{i}", cpu(0.1)) for i in range(1, 4)]
    await wait_for(lambda: pool.waiting == 4)
    assert pool.try_allocate("small-x", cpu(0.1)) is None
    assert pool.usage()["cpu"].used == 0.5

    pool.release_nowait("small-0")
    assert await big == {"cpu": 1.0}
    await settle()
    assert not any(s.done() for s in smalls)

    pool.release_nowait("big")
    assert [await s for s in smalls] == [{"cpu": 0.1}] * 3


async def test_a_release_that_is_not_enough_for_the_head_grants_nobody_behind_it():
    pool = ResourcePool()
    pool.try_allocate("a", cpu(0.3))
    pool.try_allocate("b", cpu(0.3))
    big = start_allocating(pool, "big", cpu(1.0))
    await wait_for(lambda: pool.waiting == 1)
    small = start_allocating(pool, "small", cpu(0.1))
    await wait_for(lambda: pool.waiting == 2)

    pool.release_nowait("a")  # 0.7 free: enough for small, not for big ahead of it
    await settle()
    assert not small.done()
    assert pool.usage()["cpu"].used == 0.3

    pool.release_nowait("b")
    assert await big == {"cpu": 1.0}
    pool.release_nowait("big")
    assert await small == {"cpu": 0.1}


async def test_unrelated_resources_flow_past_a_blocked_request():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(0.5))
    big = start_allocating(pool, "big", cpu(1.0))
    await wait_for(lambda: pool.waiting == 1)

    assert pool.try_allocate("gpu-task", need((GPU, 0.5))) == {"gpu": 0.5}
    assert await pool.allocate("memory-task", need((MEMORY, 1))) == {"memory": 1.0}
    assert not big.done()
    big.cancel()
    await settle()


async def test_a_request_queued_behind_a_waiter_on_another_resource_still_goes_when_it_fits():
    pool = ResourcePool()
    pool.try_allocate("a", cpu(1))
    pool.try_allocate("b", need((GPU, 1)))
    cpu_waiter = start_allocating(pool, "cpu-waiter", cpu(1))
    gpu_waiter = start_allocating(pool, "gpu-waiter", need((GPU, 1)))
    await wait_for(lambda: pool.waiting == 2)
    pool.release_nowait("b")  # the GPU waiter is second in line but shares nothing with the first
    assert await gpu_waiter == {"gpu": 1.0}
    assert not cpu_waiter.done()
    cpu_waiter.cancel()
    await settle()


# -- cancellation ---------------------------------------------------------------------------


async def test_a_cancelled_waiter_takes_nothing():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    waiter = start_allocating(pool, "w", cpu(0.5))
    await wait_for(lambda: pool.waiting == 1)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.waiting == 0
    pool.release_nowait("holder")
    assert pool.usage()["cpu"].used == 0.0
    assert pool.held_by("w") == {}


async def test_a_cancelled_waiter_no_longer_blocks_those_behind_it():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(0.5))
    big = start_allocating(pool, "big", cpu(1.0))
    await wait_for(lambda: pool.waiting == 1)
    small = start_allocating(pool, "small", cpu(0.1))
    await wait_for(lambda: pool.waiting == 2)

    big.cancel()
    assert await small == {"cpu": 0.1}  # granted without any release


async def test_a_waiter_granted_then_cancelled_before_it_ran_gives_everything_back():
    pool = ResourcePool()
    pool.try_allocate("holder", need((CPU, 1), (MEMORY, 1)))
    waiter = start_allocating(pool, "w", need((CPU, 0.6), (MEMORY, 0.6)))
    await wait_for(lambda: pool.waiting == 1)

    pool.release_nowait("holder")  # grants w synchronously...
    assert pool.held_by("w") == {"cpu": 0.6, "memory": 0.6}
    waiter.cancel()  # ...but w is cancelled before it could see the grant
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.held_by("w") == {}
    assert pool.usage()["cpu"].used == 0.0
    assert pool.usage()["memory"].used == 0.0


async def test_what_a_cancelled_grantee_gives_back_goes_to_the_next_waiter():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    first = start_allocating(pool, "first", cpu(1))
    await wait_for(lambda: pool.waiting == 1)
    second = start_allocating(pool, "second", cpu(1))
    await wait_for(lambda: pool.waiting == 2)

    pool.release_nowait("holder")
    first.cancel()
    assert await second == {"cpu": 1.0}
    assert first.cancelled()


async def test_allocate_under_a_timeout_that_expires_takes_nothing():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(1))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await pool.allocate("w", cpu(0.5))
    assert pool.waiting == 0
    pool.release_nowait("holder")
    assert pool.held_by("w") == {}


async def test_cancelling_a_reservation_withdraws_it_at_once():
    pool = ResourcePool()
    pool.try_allocate("holder", cpu(0.5))
    reservation = pool.reserve("big", cpu(1.0))
    assert pool.try_allocate("small", cpu(0.1)) is None  # queued behind big

    reservation.cancel()
    # Withdrawn now, not a loop iteration later: small fits and big may ask again.
    assert pool.try_allocate("small", cpu(0.1)) == {"cpu": 0.1}
    assert pool.try_allocate("big", need((GPU, 0.1))) == {"gpu": 0.1}
    await settle()
    assert pool.waiting == 0


async def test_a_reservation_that_fits_is_granted_before_it_is_awaited():
    pool = ResourcePool()
    reservation = pool.reserve("t", cpu(0.5))
    assert reservation.done()
    assert reservation.result() == {"cpu": 0.5}
    assert pool.held_by("t") == {"cpu": 0.5}


async def test_the_same_task_id_may_allocate_again_after_releasing():
    pool = ResourcePool()
    await pool.allocate("t", cpu(0.5))
    await pool.release("t")
    assert await pool.allocate("t", cpu(1)) == {"cpu": 1.0}


# -- release --------------------------------------------------------------------------------


async def test_release_is_idempotent():
    pool = ResourcePool()
    await pool.allocate("t", cpu(0.5))
    assert await pool.release("t") == {"cpu": 0.5}
    assert await pool.release("t") == {}
    assert pool.usage()["cpu"].used == 0.0


def test_releasing_an_unknown_task_gives_back_nothing():
    pool = ResourcePool()
    pool.try_allocate("t", cpu(0.5))
    assert pool.release_nowait("never-allocated") == {}
    assert pool.usage()["cpu"].used == 0.5


# -- looking at it --------------------------------------------------------------------------


def test_usage_reports_used_capacity_and_available_per_resource():
    pool = ResourcePool({"licence": 4})
    pool.try_allocate("a", need((CPU, 0.25)))
    pool.try_allocate("b", [ResourceRequirement(CUSTOM, 3, name="licence")])
    usage = pool.usage()
    assert usage["cpu"] == ResourceUsage(used=0.25, capacity=1.0)
    assert usage["cpu"].available == 0.75
    assert usage["licence"] == ResourceUsage(used=3.0, capacity=4.0)
    assert usage["licence"].available == 1.0


async def test_listeners_hear_every_allocation_and_release():
    pool = ResourcePool()
    seen: list[float] = []
    pool.add_listener(lambda p: seen.append(p.usage()["cpu"].used))

    pool.try_allocate("a", cpu(0.5))
    await pool.allocate("b", cpu(0.25))
    await pool.release("a")
    await pool.release("a")  # nothing to give back: nothing to hear
    assert seen == [0.5, 0.75, 0.25]


async def test_a_listener_never_sees_a_resource_over_its_capacity():
    pool = ResourcePool({"licence": 2})
    calls = 0

    def check(p: ResourcePool) -> None:
        nonlocal calls
        calls += 1
        for key, usage in p.usage().items():
            assert 0 <= usage.used <= usage.capacity, key

    pool.add_listener(check)
    tasks = [start_allocating(pool, f"t{i}", licence() + cpu(0.3)) for i in range(10)]
    for index in range(10):  # granted in arrival order, at most two at a time
        await wait_for(lambda i=index: tasks[i].done())
        assert pool.usage()["licence"].used <= 2
        await pool.release(f"t{index}")
    assert pool.waiting == 0
    assert calls == 20  # ten grants and ten releases


def test_repr_of_an_idle_pool():
    assert repr(ResourcePool()) == "<ResourcePool idle waiters:0>"


async def test_repr_shows_used_resources_and_waiters():
    pool = ResourcePool()
    pool.try_allocate("a", cpu(0.5))
    waiters = [start_allocating(pool, f"w{i}", cpu(1)) for i in range(3)]
    await wait_for(lambda: pool.waiting == 3)
    assert repr(pool) == "<ResourcePool cpu 0.5/1 waiters:3>"
    for waiter in waiters:
        waiter.cancel()
    await settle()
    assert repr(pool) == "<ResourcePool cpu 0.5/1 waiters:0>"


def test_repr_always_shows_custom_resources():
    pool = ResourcePool({"licence": 4})
    pool.try_allocate("a", need((GPU, 0.25)))
    assert repr(pool) == "<ResourcePool gpu 0.25/1 licence 0/4 waiters:0>"


# -- the invariant, under random use --------------------------------------------------------

amounts = st.integers(min_value=1, max_value=1000).map(lambda milli: milli / 1000)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("take"), st.integers(0, 5), amounts, amounts),
            st.tuples(st.just("give"), st.integers(0, 5), st.just(0.0), st.just(0.0)),
        ),
        max_size=60,
    )
)
def test_random_take_and_give_keeps_usage_exact_and_within_capacity(steps):
    pool = ResourcePool()
    model: dict[str, tuple[int, int]] = {}  # task -> (cpu, memory) in milli-units
    for action, number, cpu_amount, memory_amount in steps:
        task = f"t{number}"
        if action == "give":
            pool.release_nowait(task)
            model.pop(task, None)
        elif task not in model:
            want = (round(cpu_amount * 1000), round(memory_amount * 1000))
            used = [sum(held[i] for held in model.values()) for i in (0, 1)]
            fits = all(used[i] + want[i] <= 1000 for i in (0, 1))
            taken = pool.try_allocate(task, need((CPU, cpu_amount), (MEMORY, memory_amount)))
            assert (taken is not None) == fits
            if fits:
                model[task] = want
        used = [sum(held[i] for held in model.values()) for i in (0, 1)]
        usage = pool.usage()
        assert usage["cpu"].used == used[0] / 1000
        assert usage["memory"].used == used[1] / 1000
        assert usage["cpu"].used <= usage["cpu"].capacity


# -- capacities that change (a Ray cluster that grows and shrinks) ----------------------------


async def test_a_growing_capacity_grants_the_waiters_that_fit_now():
    pool = ResourcePool({"cpu": 2})
    assert pool.try_allocate("a", cpu(2)) is not None
    waiting = pool.reserve("b", cpu(1))
    pool.set_capacity("cpu", 3)
    assert waiting.done() and waiting.result() == {"cpu": 1.0}
    assert pool.usage()["cpu"] == ResourceUsage(3.0, 3.0)


async def test_a_shrink_keeps_what_is_held_and_grants_nothing_until_it_fits_again():
    pool = ResourcePool({"cpu": 4})
    assert pool.try_allocate("a", cpu(3)) is not None
    pool.set_capacity("cpu", 2)  # a node left: held stays held, above the new capacity
    assert pool.usage()["cpu"] == ResourceUsage(3.0, 2.0)
    waiting = pool.reserve("b", cpu(1))
    await settle()
    assert not waiting.done()  # never over-allocated by a new grant
    pool.release_nowait("a")
    assert waiting.result() == {"cpu": 1.0}


async def test_a_waiter_bigger_than_a_shrunk_capacity_waits_for_it_to_grow_again():
    pool = ResourcePool({"gpu": 2})
    assert pool.try_allocate("a", [ResourceRequirement(ResourceType.GPU, 1)]) is not None
    waiting = pool.reserve("b", [ResourceRequirement(ResourceType.GPU, 2)])
    pool.set_capacity("gpu", 1)
    pool.release_nowait("a")
    await settle()
    assert not waiting.done()  # accepted when it fitted: it waits, it is not dropped
    with pytest.raises(ValidationError, match="capacity is 1"):  # a new one is refused
        pool.check([ResourceRequirement(ResourceType.GPU, 2)])
    pool.set_capacity("gpu", 2)
    assert waiting.result() == {"gpu": 2.0}


def test_set_capacity_adds_a_resource_and_tells_the_listeners():
    pool = ResourcePool()
    seen: list[float] = []
    pool.add_listener(lambda p: seen.append(p.capacities.get("alpha", -1)))
    pool.set_capacity("alpha", 2)
    pool.set_capacity("alpha", 2)  # no change, no news
    pool.set_capacity("alpha", 0)
    assert seen == [2.0, 0.0]
    with pytest.raises(ValidationError, match="must be positive"):
        pool.set_capacity("alpha", -1)
