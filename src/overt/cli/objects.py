"""What the inventory commands share: naming an object by name or id, printing the result."""

from __future__ import annotations

import uuid
from typing import Any

from overt.cli.client import ApiClient, ApiError
from overt.cli.output import as_json, console


def resolve(client: ApiClient, collection: str, item: str, name_or_id: str) -> dict[str, Any]:
    """The object named `name_or_id` (an id, or a name that only one object has)."""
    try:
        uuid.UUID(name_or_id)
    except ValueError:
        found = [o for o in client.get(f"/{collection}", search=f"name={name_or_id}").get(item, [])
                 if o.get("name") == name_or_id]
        what = item.replace("_", " ")
        if not found:
            raise ApiError(f"there is no {what} named {name_or_id!r}") from None
        if len(found) > 1:
            raise ApiError(f"{len(found)} {what}s are named {name_or_id!r}; give the id of "
                           "the one you mean") from None
        return dict(found[0])
    return dict(client.get(f"/{collection}/{name_or_id}"))


def names_by_id(client: ApiClient, collection: str, item: str) -> dict[str, str]:
    return {o["id"]: o["name"] for o in client.get(f"/{collection}").get(item, [])}


def report(obj: dict[str, Any], json: bool, done: str) -> None:
    """Print the object as JSON, or one line saying what was done."""
    if json:
        as_json(obj)
    else:
        console.print(f"[green]✓[/] {done}")


def changes(**fields: Any) -> dict[str, Any]:
    """The fields a user gave (None means: leave as it is)."""
    return {key: value for key, value in fields.items() if value is not None}
