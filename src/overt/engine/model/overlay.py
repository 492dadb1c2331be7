"""Overlay networks: oVirt makes them through an external network provider (OVN); Overt's
built-in provider, named here, makes a VXLAN overlay between the hosts that carry the
network, so it needs no VLAN trunk between them."""

from __future__ import annotations

import uuid

OVERLAY_PROVIDER = "overt-vxlan"
OVERLAY_PROVIDER_ID = uuid.UUID("7a1c3d52-5e0b-4f0e-9c39-0d6f2b8e5a01")
FIRST_VNI = 5001
MAX_VNI = 16777215  # 24 bits
