"""Back-office user directory and lifecycle (admin only), and the two-admin grants of privileged roles."""

from __future__ import annotations

from aiohttp import web

from api.access import roles
from api.admin.schemas import RoleGrantListOut, RoleGrantListQuery, RoleGrantOut
from api.auth.schemas import AdminUserOut, RolesIn, StatusIn, UserListOut, UserListQuery
from api.http import json_response, path_uuid
from api.keys import REDIS, SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from api.schemas import Empty
from core.time import utcnow
from identity import service
from identity.grants import service as grants

admin_users = Routes(tag="admin")
ADMIN = roles("admin")


@admin_users.get("/admin/users", access=ADMIN, query=UserListQuery, responses={200: UserListOut},
                 errors={422: ("invalid_cursor",)})
async def list_users(request: web.Request, query: UserListQuery) -> UserListOut:
    """Users, newest first, filtered by email (substring), role and status."""
    page = await service.list_users(db_session(request), email=query.email, role=query.role, status=query.status,
                                    limit=query.limit, cursor=query.cursor)
    return UserListOut(items=[AdminUserOut.model_validate(user) for user in page.items], next_cursor=page.next_cursor)


@admin_users.get("/admin/users/{user_id}", access=ADMIN, responses={200: AdminUserOut},
                 errors={404: ("user_not_found",)})
async def get_user(request: web.Request) -> AdminUserOut:
    """One user."""
    user = await service.get_user(db_session(request), path_uuid(request, "user_id", "user_not_found"))
    return AdminUserOut.model_validate(user)


@admin_users.post("/admin/users/{user_id}/role", access=ADMIN, body=RolesIn,
                  responses={200: AdminUserOut, 202: RoleGrantOut},
                  errors={404: ("user_not_found",), 409: ("last_admin", "role_grant_pending"),
                          422: ("invalid_roles", "privileged_grant_alone")})
async def set_roles(request: web.Request, body: RolesIn) -> web.StreamResponse:
    """Replace a user's roles (200, the user); the last admin keeps the admin role.

    Adding `operator`, `compliance` or `admin` takes two admins: the answer is 202 with a pending
    grant of that role, which another admin confirms (`POST /admin/role-grants/{grant_id}/confirm`).
    Such a request names the user's current roles plus that one role (else 422
    `privileged_grant_alone`); one pending grant per user and role (409 `role_grant_pending`).
    """
    change = await grants.change_roles(db_session(request), request.config_dict[REDIS], current(request).user_id,
                                       path_uuid(request, "user_id", "user_not_found"), list(body.roles),
                                       expiry_hours=request.config_dict[SETTINGS].role_grant_expiry_hours)
    if change.grant is not None:
        return json_response(RoleGrantOut.of(change.grant, utcnow()), status=202)
    return json_response(AdminUserOut.model_validate(change.user))


@admin_users.get("/admin/role-grants", access=ADMIN, query=RoleGrantListQuery, responses={200: RoleGrantListOut},
                 errors={422: ("invalid_cursor",)})
async def list_role_grants(request: web.Request, query: RoleGrantListQuery) -> RoleGrantListOut:
    """Role grants, newest first: by default those still waiting for a second admin (`state=pending`,
    not past `expires_at`); `state=confirmed` or `expired`; one user's with `user_id`."""
    page = await grants.list_grants(db_session(request), state=query.state, user_id=query.user_id,
                                    limit=query.limit, cursor=query.cursor)
    now = utcnow()
    return RoleGrantListOut(items=[RoleGrantOut.of(grant, now) for grant in page.items], next_cursor=page.next_cursor)


@admin_users.post("/admin/role-grants/{grant_id}/confirm", access=ADMIN, body=Empty, responses={200: RoleGrantOut},
                  errors={403: ("same_admin", "own_grant"), 404: ("role_grant_not_found",),
                          409: ("invalid_state", "role_grant_expired")})
async def confirm_role_grant(request: web.Request, body: Empty) -> RoleGrantOut:
    """Confirm another admin's grant: the user has the role from now on. Not by the admin who asked
    (403 `same_admin`) nor by the user it is for (403 `own_grant`); a grant confirmed already, or
    expired, is a 409."""
    grant = await grants.confirm(db_session(request), request.config_dict[REDIS], current(request).user_id,
                                 path_uuid(request, "grant_id", "role_grant_not_found"))
    return RoleGrantOut.of(grant, utcnow())


@admin_users.post("/admin/users/{user_id}/status", access=ADMIN, body=StatusIn, responses={200: AdminUserOut},
                  errors={404: ("user_not_found",), 409: ("last_admin",)})
async def set_status(request: web.Request, body: StatusIn) -> AdminUserOut:
    """Activate or suspend a user; suspending revokes every session at once."""
    user = await service.set_status(db_session(request), request.config_dict[REDIS], current(request).user_id,
                                    path_uuid(request, "user_id", "user_not_found"), body.status)
    return AdminUserOut.model_validate(user)
