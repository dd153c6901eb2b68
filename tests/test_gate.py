"""SendGate: at most ``limit`` sends at once, waiters served first come, first served."""

from __future__ import annotations

import asyncio

import pytest

from sfauth._gate import SendGate


async def run_ready_tasks() -> None:
    """Let the tasks created so far run up to their first suspension.

    Not a timed wait: ``create_task`` schedules each task's first step with ``call_soon``,
    and one pass of the loop runs every step already scheduled before this one resumes.
    """
    await asyncio.sleep(0)


async def test_try_enter_takes_up_to_limit_slots_then_refuses() -> None:
    gate = SendGate(3)
    assert gate.in_use == 0
    assert [gate.try_enter() for _ in range(4)] == [True, True, True, False]
    assert gate.in_use == 3
    gate.leave()
    assert gate.in_use == 2
    assert gate.try_enter() is True
    assert gate.try_enter() is False
    assert gate.in_use == 3
    for expected in (2, 1, 0):
        gate.leave()
        assert gate.in_use == expected


async def test_a_leave_without_a_slot_taken_does_not_add_slots() -> None:
    gate = SendGate(2)
    assert gate.try_enter() is True
    gate.leave()
    gate.leave()  # one too many
    assert gate.in_use == 0
    assert [gate.try_enter() for _ in range(3)] == [True, True, False]
    assert gate.in_use == 2


async def test_enter_takes_a_free_slot_without_waiting() -> None:
    gate = SendGate(2)
    await gate.enter()
    await gate.enter()
    assert gate.in_use == 2
    assert gate.try_enter() is False


async def test_waiters_are_served_in_arrival_order() -> None:
    gate = SendGate(1)
    assert gate.try_enter() is True
    order: list[str] = []

    async def send(name: str) -> None:
        await gate.enter()
        order.append(name)
        gate.leave()

    tasks = [asyncio.create_task(send(name)) for name in ("a", "b", "c", "d")]
    await run_ready_tasks()
    assert order == []
    assert [t.done() for t in tasks] == [False] * 4
    gate.leave()
    await asyncio.gather(*tasks)
    assert order == ["a", "b", "c", "d"]
    assert gate.in_use == 0


async def test_leave_hands_the_slot_to_the_oldest_waiter_before_a_later_try_enter() -> None:
    gate = SendGate(1)
    assert gate.try_enter() is True
    entered = asyncio.Event()

    async def waiter() -> None:
        await gate.enter()
        entered.set()

    task = asyncio.create_task(waiter())
    await run_ready_tasks()
    gate.leave()  # handed to the waiter, which has not run yet
    assert gate.in_use == 1  # the slot went to the waiter, not back to the pool
    assert gate.try_enter() is False  # a later arrival cannot take it
    await entered.wait()
    await task
    assert gate.in_use == 1  # the waiter holds it
    gate.leave()
    assert gate.in_use == 0
    assert gate.try_enter() is True


async def test_a_later_enter_queues_behind_an_earlier_waiter() -> None:
    gate = SendGate(1)
    assert gate.try_enter() is True
    order: list[str] = []

    async def send(name: str) -> None:
        await gate.enter()
        order.append(name)

    first = asyncio.create_task(send("first"))
    await run_ready_tasks()
    gate.leave()  # handed to "first"
    late = asyncio.create_task(send("late"))  # arrives after the hand-off
    await first
    await run_ready_tasks()
    assert order == ["first"]  # "late" waits: the slot is "first"'s
    assert late.done() is False
    gate.leave()
    await late
    assert order == ["first", "late"]
    assert gate.in_use == 1
    gate.leave()
    assert gate.in_use == 0


async def test_a_cancelled_waiter_leaves_the_queue_without_taking_a_slot() -> None:
    gate = SendGate(1)
    assert gate.try_enter() is True
    task = asyncio.create_task(gate.enter())
    await run_ready_tasks()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.in_use == 1  # still only the holder
    gate.leave()
    assert gate.in_use == 0  # not handed to the cancelled waiter
    assert [gate.try_enter(), gate.try_enter()] == [True, False]
    gate.leave()
    assert gate.in_use == 0


async def test_a_cancelled_waiter_lets_the_next_waiter_through() -> None:
    gate = SendGate(1)
    assert gate.try_enter() is True
    cancelled = asyncio.create_task(gate.enter())
    behind = asyncio.create_task(gate.enter())
    await run_ready_tasks()
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.leave()
    await behind  # the slot skipped the cancelled waiter
    assert gate.in_use == 1
    gate.leave()
    assert gate.in_use == 0


async def test_cancelled_right_after_the_hand_off_passes_the_slot_to_the_next_waiter() -> None:
    gate = SendGate(1)
    assert gate.try_enter() is True
    first = asyncio.create_task(gate.enter())
    second = asyncio.create_task(gate.enter())
    await run_ready_tasks()
    gate.leave()  # handed to `first`...
    first.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await first
    await run_ready_tasks()
    assert second.done() is True  # `first` passed its slot on
    await second
    assert gate.in_use == 1
    gate.leave()
    assert gate.in_use == 0
    assert gate.try_enter() is True


async def test_cancelled_right_after_the_hand_off_returns_the_slot_to_the_pool() -> None:
    gate = SendGate(2)
    assert [gate.try_enter(), gate.try_enter()] == [True, True]
    task = asyncio.create_task(gate.enter())
    await run_ready_tasks()
    gate.leave()  # handed to the waiter
    assert gate.in_use == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.in_use == 1  # back to the pool: no slot leaked
    assert [gate.try_enter(), gate.try_enter()] == [True, False]


def test_a_second_event_loop_starts_with_every_slot_free() -> None:
    gate = SendGate(2)

    async def first_loop() -> None:
        gate.bind(asyncio.get_running_loop())
        assert [gate.try_enter(), gate.try_enter()] == [True, True]
        # A waiter still queued when the loop ends; asyncio.run cancels it.
        waiter = asyncio.get_running_loop().create_task(gate.enter())
        await run_ready_tasks()
        assert waiter.done() is False
        assert gate.in_use == 2

    async def second_loop() -> list[bool]:
        gate.bind(asyncio.get_running_loop())
        taken = [gate.try_enter() for _ in range(3)]
        assert gate.in_use == 2
        gate.leave()
        assert gate.in_use == 1
        await gate.enter()  # no stale waiter of the first loop stands in the way
        assert gate.in_use == 2
        return taken

    asyncio.run(first_loop())
    assert asyncio.run(second_loop()) == [True, True, False]


def test_a_loop_closed_with_a_send_still_queued_leaves_no_waiter_behind() -> None:
    gate = SendGate(1)
    loop = asyncio.new_event_loop()

    async def queue_one() -> asyncio.Task[None]:
        gate.bind(asyncio.get_running_loop())
        assert gate.try_enter() is True
        task = asyncio.get_running_loop().create_task(gate.enter())
        await run_ready_tasks()
        return task

    stranded = loop.run_until_complete(queue_one())
    loop.close()  # neither the holder nor the waiter ever finishes
    assert stranded.done() is False

    async def take() -> tuple[bool, bool, int]:
        gate.bind(asyncio.get_running_loop())
        return gate.try_enter(), gate.try_enter(), gate.in_use

    assert asyncio.run(take()) == (True, False, 1)


def test_two_runners_one_after_the_other_each_get_every_slot() -> None:
    gate = SendGate(1)

    async def take() -> tuple[bool, bool, int]:
        gate.bind(asyncio.get_running_loop())
        return gate.try_enter(), gate.try_enter(), gate.in_use

    with asyncio.Runner() as runner:
        assert runner.run(take()) == (True, False, 1)  # never left
    with asyncio.Runner() as runner:
        assert runner.run(take()) == (True, False, 1)


async def test_binding_the_loop_it_serves_keeps_the_slots_taken() -> None:
    gate = SendGate(2)
    assert gate.try_enter() is True  # taken before the first bind: in this loop
    gate.bind(asyncio.get_running_loop())
    gate.bind(asyncio.get_running_loop())
    assert gate.in_use == 1
    assert [gate.try_enter(), gate.try_enter()] == [True, False]


async def test_try_enter_does_not_look_up_the_running_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # asyncio.get_running_loop() is a getpid() system call on CPython 3.11: not per request.
    gate = SendGate(2)
    gate.bind(asyncio.get_running_loop())
    looked_up = []
    real = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        looked_up.append(1)
        return real()

    monkeypatch.setattr(asyncio, "get_running_loop", counted)
    assert [gate.try_enter(), gate.try_enter(), gate.try_enter()] == [True, True, False]
    gate.leave()
    assert looked_up == []


async def test_a_loop_that_used_the_gate_meanwhile_does_not_double_the_slots() -> None:
    # The gate is shared by whatever uses the middleware: another loop (a thread's
    # asyncio.run) binds it; the session's own loop must bind it back before taking slots.
    gate = SendGate(2)
    loop = asyncio.get_running_loop()
    gate.bind(loop)

    async def elsewhere() -> None:
        await gate.enter()
        gate.leave()

    await asyncio.to_thread(asyncio.run, elsewhere())
    gate.bind(loop)
    assert [gate.try_enter(), gate.try_enter(), gate.try_enter()] == [True, True, False]
    third = asyncio.ensure_future(gate.enter())
    await run_ready_tasks()
    assert third.done() is False
    assert gate.in_use == 2
    gate.leave()
    await third
    assert gate.in_use == 2
