"""Signing in to the portal with a plain HTTP client (the form's double-submit token)."""

from __future__ import annotations

import httpx


def sign_in(client: httpx.Client, user: str, password: str) -> str:
    """Sign `client` (base_url: the portal) in; returns the session cookie."""
    client.get("/signin")
    token = client.cookies["overt_signin"]
    answer = client.post("/signin", data={"csrf_token": token, "username": user,
                                          "password": password, "next": "/"})
    assert answer.status_code == 303, answer.text[:500]
    return str(client.cookies["overt_session"])


def sign_out(client: httpx.Client, csrf: str) -> None:
    answer = client.post("/signout", headers={"X-CSRF-Token": csrf})
    assert answer.status_code == 303, answer.text[:500]
