"""Every kind of audit event has a code of its own: notifications, SNMP traps and event
searches tell events apart by code."""

from __future__ import annotations

from collections import Counter

from overt.engine import audit


def test_no_two_kinds_of_event_share_a_code() -> None:
    codes = {name: value for name, value in vars(audit).items()
             if name.isupper() and isinstance(value, int) and not isinstance(value, bool)}
    assert len(codes) > 100
    shared = {code: sorted(n for n, v in codes.items() if v == code)
              for code, count in Counter(codes.values()).items() if count > 1}
    assert shared == {}
