import uuid

from overt.engine.model.storage_reach import Strikes

HOST, SD, OTHER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def test_misses_in_a_row_count_and_one_success_clears_them() -> None:
    strikes = Strikes(needed=2)
    assert strikes.note(HOST, SD, reachable=False) is False
    assert strikes.note(HOST, SD, reachable=False) is True
    assert strikes.note(HOST, SD, reachable=False) is True
    assert strikes.note(HOST, SD, reachable=True) is False
    assert strikes.note(HOST, SD, reachable=False) is False


def test_counts_are_per_domain_and_forgotten_for_domains_no_longer_probed() -> None:
    strikes = Strikes(needed=2)
    strikes.note(HOST, SD, reachable=False)
    assert strikes.note(HOST, OTHER, reachable=False) is False
    strikes.forget(HOST, keep=[OTHER])
    assert strikes.note(HOST, SD, reachable=False) is False  # its count started again
    assert strikes.note(HOST, OTHER, reachable=False) is True


def test_needed_is_at_least_one() -> None:
    assert Strikes(needed=0).note(HOST, SD, reachable=False) is True
