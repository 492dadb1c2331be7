"""The dead-letter budget per publisher, on a clock of the test's own."""

from __future__ import annotations

from overt.bus.amqp.messages import DeadLetterBudget


def test_each_publisher_spends_its_own_budget_per_window() -> None:
    now = [0.0]
    budget = DeadLetterBudget(per_publisher=2, window_s=60, clock=lambda: now[0])
    assert [budget.take("node-a") for _ in range(3)] == [1, 2, 3]  # the 3rd is over budget
    assert budget.take("node-b") == 1
    now[0] = 61
    assert budget.take("node-a") == 1  # a new window
