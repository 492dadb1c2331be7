"""Which moves each placement policy affinity allows."""

import pytest

from overt.engine.model.placement_policy import migration_refusal


@pytest.mark.parametrize(("affinity", "by_user", "by_engine"), [
    (None, True, True), ("migratable", True, True), ("user_migratable", True, False),
    ("pinned", False, False)])
def test_each_affinity_allows_the_moves_of_its_name(affinity: str | None, by_user: bool,
                                                     by_engine: bool) -> None:
    assert (migration_refusal("web", affinity, by_engine=False) is None) is by_user
    assert (migration_refusal("web", affinity, by_engine=True) is None) is by_engine


def test_a_refusal_names_the_vm_and_its_affinity() -> None:
    assert migration_refusal("db", "pinned", by_engine=False) == \
        "VM db is pinned to its host (placement policy affinity pinned)"
