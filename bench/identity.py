"""Identity: sign-in latency for internal, LDAP and Kerberos users, and the cost of the
user view (a filtered listing of 1,000 VMs for a user with 10 permissions) against the
administrator's unfiltered one.

Runs its own OpenLDAP server and MIT KDC on loopback and a real engine (SQLite by default,
or --db postgresql+psycopg://...) in this process. Prints p50/p99. Usage:
    .venv/bin/python -m bench.identity [--vms 1000] [--signins 50] [--requests 100] [--db URL]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import ssl
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import gssapi
import httpx
from sqlalchemy import select
from tests.support.engine import start_engine
from tests.support.kdc import start_kdc
from tests.support.no_nodes import NoNodes
from tests.support.slapd import PASSWORDS, start_slapd

from bench.api_latency import fill, measure, percentile
from overt.engine.db.database import Database
from overt.engine.db.tables import Permission, User
from overt.engine.identity.roles import USER_ROLE

KERBEROS_PASSWORD = "alice-Kerberos-1"


def timed(count: int, call: Callable[[], None]) -> list[float]:
    call()  # warm up
    times = []
    for _ in range(count):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def report(label: str, times: list[float]) -> None:
    print(f"{label:<52} p50 {percentile(times, 50) * 1000:7.1f} ms   "
          f"p99 {percentile(times, 99) * 1000:7.1f} ms")


async def give_permissions(url: str, user_name: str, vm_ids: list[uuid.UUID]) -> None:
    db = Database(url)
    async with db.transaction() as session:
        user = (await session.execute(select(User).where(User.user_name == user_name))
                ).scalar_one()
        session.add_all(Permission(role_id=USER_ROLE.id, user_id=user.id, object_type="vm",
                                   object_id=vm_id) for vm_id in vm_ids)
    await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--signins", type=int, default=50)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    slapd = start_slapd(work / "slapd")
    kdc = start_kdc(work / "kdc", {"alice": KERBEROS_PASSWORD})
    os.environ.update(kdc.env(work / "ccache"))
    kdc.kinit("alice", KERBEROS_PASSWORD, work / "ccache")
    (work / "profiles.toml").write_text(slapd.profile_toml("example.com"))
    engine = start_engine(work / "engine", db=args.db, transport=NoNodes(),
                          auth_profiles_file=work / "profiles.toml",
                          kerberos_keytab=kdc.keytab, kerberos_profile="example.com")
    try:
        tls = ssl.create_default_context(cafile=str(engine.ca_file))
        base = engine.url.removesuffix("/ovirt-engine/api")
        http = httpx.Client(base_url=base, verify=tls, timeout=60)

        def password_signin(user: str, password: str) -> Callable[[], None]:
            def call() -> None:
                reply = http.post("/ovirt-engine/sso/oauth/token", data={
                    "grant_type": "password", "scope": "ovirt-app-api", "username": user,
                    "password": password})
                assert "access_token" in reply.json(), reply.text
            return call

        def kerberos_signin() -> None:
            service = gssapi.Name("HTTP@127.0.0.1", gssapi.NameType.hostbased_service)
            token = gssapi.SecurityContext(name=service, usage="initiate").step()
            assert token is not None
            reply = http.post("/ovirt-engine/sso/oauth/token-http-auth", data={
                "grant_type": "urn:ovirt:params:oauth:grant-type:http",
                "scope": "ovirt-app-api"},
                headers={"Authorization": f"Negotiate {base64.b64encode(token).decode()}"})
            assert "access_token" in reply.json(), reply.text

        backend = "PostgreSQL" if args.db else "SQLite"
        print(f"engine on {backend}; {args.signins} sign-ins each, {args.requests} listings")
        report("sign-in admin@internal (scrypt)",
               timed(args.signins, password_signin("admin@internal", engine.password)))
        report("sign-in alice@example.com (LDAP bind + nested groups)",
               timed(args.signins, password_signin("alice@example.com", PASSWORDS["alice"])))
        report("sign-in alice@OVERT.TEST (Kerberos + LDAP lookup)",
               timed(args.signins, kerberos_signin))

        ids = asyncio.run(fill(engine.runtime.settings.database_url(), args.vms))
        asyncio.run(give_permissions(engine.runtime.settings.database_url(),
                                     "alice@example.com", ids[:: max(1, len(ids) // 10)][:10]))

        def token(user: str, password: str) -> str:
            return str(http.post("/ovirt-engine/sso/oauth/token", data={
                "grant_type": "password", "scope": "ovirt-app-api", "username": user,
                "password": password}).json()["access_token"])

        root, alice = (token("admin@internal", engine.password),
                       token("alice@example.com", PASSWORDS["alice"]))
        report(f"GET /vms as admin ({args.vms} VMs, unfiltered)",
               measure(engine, "/ovirt-engine/api/vms", args.requests, root))
        report("GET /vms?filter=true as alice (10 permissions)",
               measure(engine, "/ovirt-engine/api/vms?filter=true", args.requests, alice))
        http.close()
    finally:
        engine.stop()
        kdc.stop()
        slapd.stop()


if __name__ == "__main__":
    main()
