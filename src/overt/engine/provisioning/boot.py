"""What a machine booting from a provisioning network runs, chosen by its MAC.

The network services' `boot.ipxe` chains to `mac-<aa-bb-cc-dd-ee-ff>.ipxe` (iPXE's
`${netX/mac:hexhyp}`: the NIC that booted); a MAC with a profile has such a script, any
other falls back to the default profile, or else to the plan's boot entry. The kernel
command line tells the booted node where the engine is (`overt.engine`) and which CA to
trust (`overt.ca_fingerprint`); DNS SRV `_overt._tcp` is its fallback."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_KERNEL_ARGS = 1024
# Kernel arguments iPXE passes on as typed: no line breaks, and no `${...}` expansion of
# an administrator's text (only ours).
_FORBIDDEN_ARGS = re.compile(r"[\r\n\x00]|\$\{")


def normalize_mac(text: str) -> str | None:
    """A MAC as the engine keeps it (lower case, colons), or None if it is none."""
    mac = text.strip().lower().replace("-", ":")
    return mac if MAC.match(mac) else None


def kernel_args_problem(text: str) -> str | None:
    if len(text) > MAX_KERNEL_ARGS:
        return f"kernel arguments are limited to {MAX_KERNEL_ARGS} characters"
    if _FORBIDDEN_ARGS.search(text):
        return "kernel arguments must be one line, without '${'"
    return None


@dataclass(frozen=True)
class ProfileBoot:
    """One profile as the boot service sees it."""

    name: str
    mac: str | None  # None: the default profile
    image: str
    kernel_args: str = ""


def image_file(image: str, which: str) -> str:
    """The boot file name of a node image's kernel or initramfs in the TFTP root."""
    return f"node-{image}-{which}"


def mac_script_name(mac: str) -> str:
    return "mac-" + mac.replace(":", "-") + ".ipxe"


def choose(profiles: Iterable[ProfileBoot], mac: str) -> ProfileBoot | None:
    """The profile of the machine with `mac`: its own, else the default one."""
    default = None
    for profile in profiles:
        if profile.mac == mac:
            return profile
        if profile.mac is None:
            default = profile
    return default


def node_cmdline(profile: ProfileBoot, *, engine_url: str, ca_fingerprint: str | None) -> str:
    """The node's kernel command line: the engine, its CA, the booting NIC, then the
    profile's own arguments (last: an administrator's value wins)."""
    parts = ["console=tty0", "console=ttyS0,115200", "panic=-1", f"overt.engine={engine_url}",
             "BOOTIF=01-${netX/mac:hexhyp}", f"overt.profile={profile.name}"]
    if ca_fingerprint:
        parts.append("overt.ca_fingerprint=" + ca_fingerprint.replace(":", "").lower())
    if profile.kernel_args:
        parts.append(profile.kernel_args)
    return " ".join(parts)


def profile_script(profile: ProfileBoot, *, base: str, engine_url: str,
                   ca_fingerprint: str | None) -> str:
    """The iPXE script of a profile; `base` prefixes the boot files (HTTP or TFTP)."""
    cmdline = node_cmdline(profile, engine_url=engine_url, ca_fingerprint=ca_fingerprint)
    initrd = image_file(profile.image, 'initrd.img')
    # `initrd=` for the kernel's EFI stub, as in the plain entry (`netsvc.pxe.ipxe_script`)
    return (f"#!ipxe\necho Overt node provisioning: profile {profile.name}, image "
            f"{profile.image}\nkernel {base}{image_file(profile.image, 'vmlinuz')} "
            f"initrd={initrd} {cmdline}\ninitrd {base}{initrd}\nboot\n")


def scripts(profiles: Sequence[ProfileBoot], *, base: str, engine_url: str,
            ca_fingerprint: str | None) -> dict[str, str]:
    """Every per-MAC script, plus `default.ipxe` when there is a default profile."""
    out = {}
    for profile in profiles:
        name = mac_script_name(profile.mac) if profile.mac else "default.ipxe"
        out[name] = profile_script(profile, base=base, engine_url=engine_url,
                                   ca_fingerprint=ca_fingerprint)
    return out
