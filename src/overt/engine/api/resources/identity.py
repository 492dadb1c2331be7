"""/domains, /users (add, remove), /groups, /roles with permits, and permissions everywhere."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select
from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.readers import ref_of
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import links, ref
from overt.engine.api.views import user as user_view
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Group, Permission, Role, User
from overt.engine.identity.access import SYSTEM
from overt.engine.identity.directories import Directories, domain_id
from overt.engine.identity.ldap_directory import DirectoryGroup, DirectoryUser
from overt.engine.identity.profiles import INTERNAL
from overt.engine.identity.roles import PERMITS, PREDEFINED, RoleDef
from overt.engine.identity.visibility import (
    PermissionView,
    groups_condition,
    own_group_ids,
    roles_condition,
    sees_directory,
    users_condition,
    visible_group,
    visible_user,
)
from overt.engine.model.errors import InvalidInput, NotFound
from overt.engine.queries.lookup import Ref
from overt.engine.services import identity as service
from overt.engine.services import internal_users

routes = ApiRoutes()

# Where permissions hang, and the element naming the object in a permission.
OBJECT_PATHS = {"datacenters": "data_center", "clusters": "cluster", "hosts": "host",
                "storagedomains": "storage_domain", "networks": "network",
                "templates": "template", "vms": "vm", "disks": "disk"}


def _directories(ctx: ApiContext) -> Directories:
    directories: Directories = ctx.request.app.state.directories
    return directories


def _pattern(ctx: ApiContext) -> str:
    """The name pattern of a directory search (`name=ali*`, `usrname=alice`, or `alice`)."""
    raw = ctx.request.query_params.get("search", "") or "*"
    value = raw.partition("=")[2] if "=" in raw else raw
    value = value.strip().strip('"') or "*"
    if len(value) > 255:
        raise InvalidInput("the search is too long")
    return value


# -- domains ---------------------------------------------------------------------------

def _domain_view(name: str) -> Representation:
    base = href("domains", domain_id(name))
    return {"href": base, "id": str(domain_id(name)), "name": name,
            "link": links(base, "users", "groups")}


def _domain_name(ctx: ApiContext) -> str:
    return _directories(ctx).by_id(ctx.id_param("domain_id"))


def _directory_user_view(profile: str, u: DirectoryUser) -> Representation:
    return {"href": href("domains", domain_id(profile), "users", _entry_id(u.id)),
            "id": _entry_id(u.id), "name": u.first_name or u.login, "last_name": u.last_name,
            "email": u.email or None, "user_name": f"{u.login}@{profile}", "principal": u.login,
            "domain_entry_id": u.id, "namespace": u.dn.partition(",")[2],
            "domain": ref("domains", domain_id(profile), name=profile)}


def _directory_group_view(profile: str, g: DirectoryGroup) -> Representation:
    return {"href": href("domains", domain_id(profile), "groups", _entry_id(g.id)),
            "id": _entry_id(g.id), "name": g.name, "domain_entry_id": g.id,
            "namespace": g.dn.partition(",")[2],
            "domain": ref("domains", domain_id(profile), name=profile)}


def _entry_id(value: str) -> str:
    """oVirt names directory entries by their id, hex-encoded (safe in a URL)."""
    return value.encode().hex()


@routes.get("/domains")
async def list_domains(ctx: ApiContext) -> Response:
    return ctx.render_list("domains", "domain",
                           [_domain_view(n) for n in _directories(ctx).names])


@routes.get("/domains/{domain_id}")
async def get_domain(ctx: ApiContext) -> Response:
    return ctx.render("domain", _domain_view(_domain_name(ctx)))


@routes.get("/domains/{domain_id}/users")
async def search_domain_users(ctx: ApiContext) -> Response:
    """A directory's users; those who give no permissions find only themselves."""
    profile = _domain_name(ctx)
    if profile == INTERNAL:
        rows = await ctx.session.execute(select(User).where(
            User.domain == INTERNAL, users_condition(ctx.access)).order_by(User.user_name))
        return ctx.render_list("users", "user", [user_view(u) for u in rows.scalars()])
    found = await _directories(ctx).search_users(profile, _pattern(ctx))
    if not sees_directory(ctx.access):
        me = ctx.access.user
        found = [u for u in found if me.domain == profile and u.id == me.external_id]
    return ctx.render_list("users", "user", [_directory_user_view(profile, u) for u in found])


@routes.get("/domains/{domain_id}/groups")
async def search_domain_groups(ctx: ApiContext) -> Response:
    profile = _domain_name(ctx)
    if profile == INTERNAL:
        return ctx.render_list("groups", "group", [])
    found = await _directories(ctx).search_groups(profile, _pattern(ctx))
    if not sees_directory(ctx.access):
        me = ctx.access.user
        found = [g for g in found if me.domain == profile and g.id in me.directory_groups]
    return ctx.render_list("groups", "group", [_directory_group_view(profile, g) for g in found])


# -- users and groups ----------------------------------------------------------------------

def _profile_of(node: Node, user_name: str) -> str:
    domain = node.child("domain")
    if domain is not None:
        name = domain.get_str("name")
        if name:
            return name.removesuffix("-authz")
    _, sep, profile = user_name.rpartition("@")
    if not sep:
        raise InvalidInput("name the user's domain (user.domain.name) or give user_name as "
                           "name@profile")
    return profile.removesuffix("-authz")


@routes.post("/users")
async def add_user(ctx: ApiContext) -> Response:
    """A directory user, or (profile internal, with `password`) a new internal user."""
    node = await ctx.body("user")
    user_name = node.get_str("user_name") or node.get_str("principal") or ""
    profile = _profile_of(node, user_name)
    if profile == INTERNAL:
        user = await internal_users.add_internal_user(
            ctx.session, ctx.services.password_policy, user_name,
            node.required_str("password"), ctx.user)
    else:
        user = await service.add_user(ctx.session, _directories(ctx), user_name, profile,
                                      ctx.user)
    return ctx.render("user", user_view(user), status=201)


async def _internal_user(ctx: ApiContext) -> User:
    return await internal_users.internal_user(
        ctx.session, await ctx.session.get(User, ctx.id_param("user_id")),
        f"with id {ctx.path_params['user_id']}")


@routes.put("/users/{user_id}")
async def update_user(ctx: ApiContext) -> Response:
    """An administrator sets an internal user's password (the only thing that changes)."""
    node = await ctx.body("user")
    user = await _internal_user(ctx)
    await internal_users.set_password(ctx.session, ctx.services.password_policy, user,
                                      node.required_str("password"), ctx.user)
    return ctx.render("user", user_view(user))


@routes.post("/users/{user_id}/unlock")
async def unlock_user(ctx: ApiContext) -> Response:
    """Ends an internal user's lockout after failed sign-ins (in every API process)."""
    user = await _internal_user(ctx)
    await internal_users.unlock(ctx.session, user, ctx.user)
    ctx.request.app.state.signin_guard.unlock(user.user_name)
    return action_done(ctx)


@routes.delete("/users/{user_id}")
async def remove_user(ctx: ApiContext) -> Response:
    await service.remove_user(ctx.session, ctx.id_param("user_id"), ctx.user)
    return action_done(ctx)


def _group_view(g: Group) -> Representation:
    base = href("groups", g.id)
    return {"href": base, "id": str(g.id), "name": g.name, "domain_entry_id": g.external_id,
            "namespace": g.namespace, "link": links(base, "permissions"),
            "domain": ref("domains", domain_id(g.domain), name=g.domain)}


@routes.get("/groups")
async def list_groups(ctx: ApiContext) -> Response:
    """Every group for those who give permissions; anyone else sees their own groups."""
    condition = groups_condition(ctx.access, await own_group_ids(ctx.session, ctx.user))
    rows = await ctx.session.execute(select(Group).where(condition).order_by(Group.name))
    return ctx.render_list("groups", "group", [_group_view(g) for g in rows.scalars()])


@routes.post("/groups")
async def add_group(ctx: ApiContext) -> Response:
    node = await ctx.body("group")
    name = node.required_str("name")
    group = await service.add_group(ctx.session, _directories(ctx), name.rpartition("@")[0]
                                    or name, _profile_of(node, name), ctx.user)
    return ctx.render("group", _group_view(group), status=201)


@routes.get("/groups/{group_id}")
async def get_group(ctx: ApiContext) -> Response:
    group = await visible_group(ctx.session, ctx.access, ctx.id_param("group_id"))
    return ctx.render("group", _group_view(group))


@routes.delete("/groups/{group_id}")
async def remove_group(ctx: ApiContext) -> Response:
    await service.remove_group(ctx.session, ctx.id_param("group_id"), ctx.user)
    return action_done(ctx)


# -- roles and permits ---------------------------------------------------------------------

def _permit_view(role_id: uuid.UUID, permit: int) -> Representation:
    p = PERMITS[permit]
    return {"href": href("roles", role_id, "permits", p.id), "id": str(p.id), "name": p.name,
            "administrative": p.administrative, "role": ref("roles", role_id)}


def _role_view(role: RoleDef | Role) -> Representation:
    base = href("roles", role.id)
    return {"href": base, "id": str(role.id), "name": role.name,
            "description": role.description, "administrative": role.administrative,
            "mutable": isinstance(role, Role), "link": links(base, "permits")}


def _permits_of(role: RoleDef | Role) -> list[int]:
    if isinstance(role, Role):
        return list(role.permits)
    return sorted(p.id for p in PERMITS.values() if p.name in role.permits)


async def _role(ctx: ApiContext) -> RoleDef | Role:
    """The role the path names, when the caller may see it (others are not found)."""
    role_id = ctx.id_param("role_id")
    _, seen = await roles_condition(ctx.session, ctx.access)
    if seen is not None and role_id not in seen:
        raise NotFound(f"there is no role {role_id}")
    return await service.find_role(ctx.session, Ref(id=role_id))


@routes.get("/roles")
async def list_roles(ctx: ApiContext) -> Response:
    """Every role for those who give permissions or manage roles; others see those they
    hold."""
    condition, seen = await roles_condition(ctx.session, ctx.access)
    custom = (await ctx.session.execute(select(Role).where(condition).order_by(Role.name))
              ).scalars()
    predefined = [r for r in PREDEFINED.values() if seen is None or r.id in seen]
    return ctx.render_list("roles", "role", [_role_view(r) for r in [*predefined, *custom]])


@routes.post("/roles")
async def add_role(ctx: ApiContext) -> Response:
    node = await ctx.body("role")
    permits = [service.permit_id(p.attrs.get("id") or p.get_str("id"), p.get_str("name"))
               for p in node.items("permits", "permit")]
    role = await service.add_role(ctx.session, service.RoleInput(
        name=node.required_str("name"), description=node.get_str("description") or "",
        administrative=bool(node.get_bool("administrative")), permits=sorted(set(permits))),
        ctx.user)
    return ctx.render("role", _role_view(role), status=201)


@routes.get("/roles/{role_id}")
async def get_role(ctx: ApiContext) -> Response:
    return ctx.render("role", _role_view(await _role(ctx)))


@routes.delete("/roles/{role_id}")
async def remove_role(ctx: ApiContext) -> Response:
    await service.remove_role(ctx.session, ctx.id_param("role_id"), ctx.user)
    return action_done(ctx)


@routes.get("/roles/{role_id}/permits")
async def list_permits(ctx: ApiContext) -> Response:
    role = await _role(ctx)
    return ctx.render_list("permits", "permit", [_permit_view(role.id, p)
                                                 for p in _permits_of(role)])


@routes.post("/roles/{role_id}/permits")
async def add_permit(ctx: ApiContext) -> Response:
    node = await ctx.body("permit")
    permit = service.permit_id(node.attrs.get("id") or node.get_str("id"), node.get_str("name"))
    role = await service.set_permit(ctx.session, ctx.id_param("role_id"), permit, True, ctx.user)
    return ctx.render("permit", _permit_view(role.id, permit), status=201)


def _permit_param(ctx: ApiContext) -> int:
    raw = ctx.path_params["permit_id"]
    if not raw.isdigit() or int(raw) not in PERMITS:
        raise NotFound(f"there is no permit {raw[:64]!r}")
    return int(raw)


@routes.get("/roles/{role_id}/permits/{permit_id}")
async def get_permit(ctx: ApiContext) -> Response:
    role, permit = await _role(ctx), _permit_param(ctx)
    if permit not in _permits_of(role):
        raise NotFound(f"role {role.name} has no permit {permit}")
    return ctx.render("permit", _permit_view(role.id, permit))


@routes.delete("/roles/{role_id}/permits/{permit_id}")
async def remove_permit(ctx: ApiContext) -> Response:
    await service.set_permit(ctx.session, ctx.id_param("role_id"), _permit_param(ctx), False,
                             ctx.user)
    return action_done(ctx)


# -- permissions -----------------------------------------------------------------------------

def _permission_view(p: Permission, base: str) -> Representation:
    rep: Representation = {"href": f"{base}/{p.id}", "id": str(p.id),
                           "role": ref("roles", p.role_id),
                           "user": ref("users", p.user_id), "group": ref("groups", p.group_id)}
    if p.object_type != SYSTEM and p.object_type != "network":
        path = next(k for k, v in OBJECT_PATHS.items() if v == p.object_type)
        rep[p.object_type] = ref(path, p.object_id)
    return rep


def _scope(ctx: ApiContext) -> tuple[str, str, uuid.UUID | None]:
    """(where the permissions hang, which column filters them, the id) for this path."""
    parts = ctx.request.url.path.split("/api/", 1)[1].split("/")
    if parts[0] == "permissions":
        return "system", SYSTEM, None
    collection = parts[0]
    # The object's id is the path's one parameter besides the permission's (its raw form in
    # the URL may be percent-encoded, so it is not matched by value).
    object_id = ctx.id_param(next(k for k in ctx.path_params if k != "permission_id"))
    if collection in ("users", "groups"):
        return collection, collection, object_id
    return collection, OBJECT_PATHS[collection], object_id


def _permissions_query(kind: str, object_id: uuid.UUID | None) -> Select[Permission]:
    if kind == "users":
        return select(Permission).where(Permission.user_id == object_id)
    if kind == "groups":
        return select(Permission).where(Permission.group_id == object_id)
    return select(Permission).where(Permission.object_type == kind,
                                    Permission.object_id == object_id)


def _base(collection: str, object_id: uuid.UUID | None) -> str:
    return href("permissions") if object_id is None else href(collection, object_id,
                                                              "permissions")


async def _holder_visible(ctx: ApiContext, kind: str, object_id: uuid.UUID | None) -> None:
    """Permissions under a user or a group: only of one the caller may see."""
    if kind == "users" and object_id is not None:
        await visible_user(ctx.session, ctx.access, object_id)
    elif kind == "groups" and object_id is not None:
        await visible_group(ctx.session, ctx.access, object_id)


async def list_permissions(ctx: ApiContext) -> Response:
    """The permissions here that the caller may see (see identity.visibility)."""
    collection, kind, object_id = _scope(ctx)
    await _holder_visible(ctx, kind, object_id)
    rows = list((await ctx.session.execute(_permissions_query(kind, object_id)
                                           .order_by(Permission.created_at))).scalars())
    seen = await (await PermissionView.of(ctx.session, ctx.access)).filter(rows)
    base = _base(collection, object_id)
    return ctx.render_list("permissions", "permission", [_permission_view(p, base)
                                                         for p in seen])


async def add_permission(ctx: ApiContext) -> Response:
    collection, kind, object_id = _scope(ctx)
    base = _base(collection, object_id)
    node = await ctx.body("permission")
    role = ref_of(node.child("role"))
    if role is None:
        raise InvalidInput("permission.role is required")
    user, group = ref_of(node.child("user")), ref_of(node.child("group"))
    if kind == "users":
        user, group, kind, object_id = Ref(id=object_id), None, *_target(node)
    elif kind == "groups":
        user, group, kind, object_id = None, Ref(id=object_id), *_target(node)
    permission = await service.add_permission(ctx.session, service.PermissionInput(
        role=role, user=user, group=group), kind, object_id, ctx.user)
    return ctx.render("permission", _permission_view(permission, base), status=201)


def _target(node: Node) -> tuple[str, uuid.UUID | None]:
    """The object a permission added under a user or group is on (none: the system)."""
    for kind in OBJECT_PATHS.values():
        child = node.child(kind)
        if child is not None:
            found = ref_of(child)
            if found is None or found.id is None:
                raise InvalidInput(f"permission.{kind} needs an id")
            return kind, found.id
    return SYSTEM, None


async def _permission(ctx: ApiContext) -> tuple[Permission, str]:
    collection, kind, object_id = _scope(ctx)
    await _holder_visible(ctx, kind, object_id)
    found = (await ctx.session.execute(_permissions_query(kind, object_id).where(
        Permission.id == ctx.id_param("permission_id")))).scalar_one_or_none()
    if found is None or not await (await PermissionView.of(ctx.session, ctx.access)
                                   ).sees(found):
        raise NotFound(f"there is no permission with id {ctx.path_params['permission_id']}")
    return found, _base(collection, object_id)


async def get_permission(ctx: ApiContext) -> Response:
    permission, base = await _permission(ctx)
    return ctx.render("permission", _permission_view(permission, base))


async def remove_permission(ctx: ApiContext) -> Response:
    permission, _ = await _permission(ctx)
    await service.remove_permission(ctx.session, permission, ctx.user)
    return action_done(ctx)


def _declare_permissions() -> None:
    prefixes = ["", *(f"/{c}/{{{c[:-1]}_id}}" for c in (*OBJECT_PATHS, "users", "groups"))]
    for prefix in prefixes:
        routes.get(f"{prefix}/permissions")(list_permissions)
        routes.post(f"{prefix}/permissions")(add_permission)
        routes.get(f"{prefix}/permissions/{{permission_id}}")(get_permission)
        routes.delete(f"{prefix}/permissions/{{permission_id}}")(remove_permission)


_declare_permissions()

