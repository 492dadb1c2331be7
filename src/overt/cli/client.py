"""The CLI's connection to the engine's API: SSO login, JSON requests, following jobs."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "https://127.0.0.1:8443/ovirt-engine/api"
DEFAULT_DATA_DIR = Path("/var/lib/overt/engine")


class ApiError(RuntimeError):
    """The API answered with a fault; the message is the fault's detail."""


@dataclass
class ApiTarget:
    url: str
    user: str
    password: str
    ca_file: Path | None

    @classmethod
    def from_environment(cls, url: str | None, user: str | None, password_file: Path | None,
                         ca_file: Path | None, data_dir: Path | None) -> ApiTarget:
        """Where to connect: flags, then OVERT_* variables, then a local engine's files."""
        data = data_dir or Path(os.environ.get("OVERT_DATA_DIR", DEFAULT_DATA_DIR))
        password = os.environ.get("OVERT_PASSWORD")
        source = password_file or (data / "admin-password")
        if password is None:
            try:
                password = source.read_text().strip()
            except OSError:
                raise ApiError(f"no password: set OVERT_PASSWORD or pass --password-file "
                               f"(could not read {source})") from None
        ca = ca_file or (Path(os.environ["OVERT_CA_FILE"]) if "OVERT_CA_FILE" in os.environ
                         else data / "pki" / "ca.pem")
        return cls(url=url or os.environ.get("OVERT_URL", DEFAULT_URL),
                   user=user or os.environ.get("OVERT_USER", "admin@internal"),
                   password=password, ca_file=ca if ca.exists() else None)


def change_own_password(target: ApiTarget, new_password: str) -> None:
    """Change the signed-in user's internal password with the current one (works also when
    it expired, when no token can be had)."""
    if target.ca_file is None:
        raise ApiError("no CA certificate to verify the engine with: pass --ca-file")
    root = target.url.rstrip("/").removesuffix("/ovirt-engine/api")
    tls = ssl.create_default_context(cafile=str(target.ca_file))
    try:
        reply = httpx.post(f"{root}/ovirt-engine/sso/password", verify=tls, timeout=60, data={
            "username": target.user, "password": target.password,
            "new_password": new_password})
    except httpx.HTTPError as exc:
        raise ApiError(f"cannot reach the engine at {root}: {exc}") from None
    body = reply.json()
    if "error" in body:
        raise ApiError(f"the password was not changed: {body['error']}")


class ApiClient:
    def __init__(self, target: ApiTarget) -> None:
        if target.ca_file is None:
            raise ApiError("no CA certificate to verify the engine with: pass --ca-file "
                           "(download it from /ovirt-engine/services/pki-resource)")
        self.base = target.url.rstrip("/")
        self.ca_file: Path = target.ca_file  # image transfers' data servers use it too
        root = self.base.removesuffix("/ovirt-engine/api")
        tls = ssl.create_default_context(cafile=str(target.ca_file))
        self.http = httpx.Client(verify=tls, timeout=60)
        try:
            reply = self.http.post(f"{root}/ovirt-engine/sso/oauth/token", data={
                "grant_type": "password", "scope": "ovirt-app-api", "username": target.user,
                "password": target.password}, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach the engine at {root}: {exc}") from None
        body = reply.json()
        if "error" in body:
            raise ApiError(f"login failed: {body['error']}")
        self.http.headers.update({"Authorization": f"Bearer {body['access_token']}",
                                  "Accept": "application/json", "Version": "4"})
        self._logout = (f"{root}/ovirt-engine/services/sso-logout", body["access_token"])

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Sign out (the token dies with the command) and close the connection."""
        url, token = self._logout
        try:
            self.http.post(url, data={"scope": "ovirt-app-api", "token": token})
        finally:
            self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        url = path if path.startswith("http") else f"{self.base}{path}"
        if path.startswith("/ovirt-engine/api"):
            url = self.base.removesuffix("/ovirt-engine/api") + path
        try:
            reply = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"the engine did not answer: {exc}") from None
        if reply.status_code >= 400:
            try:
                fault = reply.json()
                message = fault.get("detail") or fault.get("reason")
            except ValueError:
                message = reply.text
            raise ApiError(f"{message} (HTTP {reply.status_code})")
        return reply.json() if reply.content else {}

    def get(self, path: str, **params: str) -> Any:
        return self._call("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any], *, correlation_id: str | None = None) -> Any:
        headers = {"Correlation-Id": correlation_id} if correlation_id else None
        return self._call("POST", path, json=body, headers=headers)

    def put(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("PUT", path, json=body)

    def delete(self, path: str, *, correlation_id: str | None = None) -> Any:
        params = {"correlation_id": correlation_id} if correlation_id else None
        return self._call("DELETE", path, params=params)

    def failure_of(self, correlation_id: str) -> str:
        """Why the jobs of one request failed, from the audit log."""
        events = self.get("/events", search=f"correlation_id={correlation_id}").get("event", [])
        errors = [e["description"] for e in events if e.get("severity") == "error"]
        return errors[0] if errors else "the job failed; see the engine's events"

    def find(self, collection: str, item: str, name: str) -> dict[str, Any]:
        found = self.get(f"/{collection}", search=f"name={name}").get(item, [])
        if not found:
            raise ApiError(f"there is no {item.replace('_', ' ')} named {name!r}")
        return dict(found[0])

    def follow_job(self, job_href: str, on_step: Callable[[str], None],
                   timeout: float = 900) -> dict[str, Any]:
        """Poll a job until it ends; call `on_step` with each new step's description."""
        deadline = time.monotonic() + timeout
        seen = ""
        while True:
            job = self.get(job_href)
            steps = self.get(f"{job_href}/steps").get("step", [])
            if steps and steps[-1]["description"] != seen:
                seen = steps[-1]["description"]
                on_step(seen)
            if job["status"] != "started":
                return dict(job)
            if time.monotonic() > deadline:
                raise ApiError(f"job {job['description']!r} did not end within {timeout:.0f} s")
            time.sleep(0.3)
