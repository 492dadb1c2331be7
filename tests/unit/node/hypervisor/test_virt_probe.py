from pathlib import Path

from overt.node.hypervisor.virt_probe import PROBE_PREFIX, cpu_has_virtualization, is_probe


def test_cpu_flags_decide_whether_kvm_can_work(tmp_path: Path) -> None:
    intel = tmp_path / "intel"
    intel.write_text("processor\t: 0\nflags\t\t: fpu vme vmx sse2\n")
    amd = tmp_path / "amd"
    amd.write_text("flags\t\t: fpu svm\n")
    nested = tmp_path / "nested"
    nested.write_text("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n")
    assert cpu_has_virtualization(intel)
    assert cpu_has_virtualization(amd)
    assert not cpu_has_virtualization(nested)
    assert not cpu_has_virtualization(tmp_path / "missing")


def test_probe_domains_are_recognised() -> None:
    assert is_probe(f"{PROBE_PREFIX}1234abcd")
    assert not is_probe("web-1")
