"""Kerberos single sign-on (SPNEGO): accept a client's Negotiate token with the engine's keytab.

The engine holds a keytab for `HTTP/<engine host>`; a client with a ticket for that
service sends it in `Authorization: Negotiate <base64>` (libcurl does it for the oVirt
SDK's `Connection(kerberos=True)`). The principal (`alice@EXAMPLE.COM`) names a user of
the LDAP profile the realm maps to, so permissions and groups are the directory's.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass
from pathlib import Path

import gssapi
from gssapi.raw.misc import GSSError

log = logging.getLogger(__name__)

MAX_TOKEN = 64 * 1024  # a Kerberos ticket with a large PAC stays far below this


class KerberosRefused(Exception):
    """The client's token was not accepted (bad, expired, for another service)."""


@dataclass(frozen=True)
class Accepted:
    principal: str  # alice@EXAMPLE.COM
    reply: str | None  # the server's answer token (base64), for mutual authentication

    @property
    def login(self) -> str:
        return self.principal.rpartition("@")[0] or self.principal

    @property
    def realm(self) -> str:
        return self.principal.rpartition("@")[2]


class KerberosAcceptor:
    """Accepts SPNEGO tokens with the keytab's service keys; blocking (run off the loop)."""

    def __init__(self, keytab: Path, profile: str) -> None:
        self.keytab = keytab
        self.profile = profile  # the LDAP profile principals are looked up in

    def accept(self, header_value: str) -> Accepted:
        if len(header_value) > MAX_TOKEN:
            raise KerberosRefused("the Negotiate token is too long")
        try:
            token = base64.b64decode(header_value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise KerberosRefused("the Negotiate token is not base64") from None
        try:
            creds = gssapi.Credentials(usage="accept", store={"keytab": str(self.keytab)})
            context = gssapi.SecurityContext(creds=creds, usage="accept")
            reply = context.step(token)
            if not context.complete:
                raise KerberosRefused("the Negotiate exchange needs more than one step, which "
                                      "this engine does not support; use a Kerberos ticket")
            principal = str(context.initiator_name)
            service = str(context.target_name) if context.target_name is not None else ""
        except GSSError as exc:
            log.warning("Kerberos sign-in refused: %s", exc.gen_message())
            raise KerberosRefused(f"the Kerberos ticket was not accepted: "
                                  f"{exc.gen_message()}") from None
        accepted = Accepted(principal, base64.b64encode(reply).decode() if reply else None)
        realm = service.rpartition("@")[2]
        if realm and accepted.realm != realm:
            # a principal of a trusted realm is not the directory user of the same name
            raise KerberosRefused(f"principals of realm {accepted.realm} do not sign in here; "
                                  f"only those of {realm}")
        return accepted
