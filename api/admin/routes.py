"""Back-office user directory and lifecycle (admin only)."""

from __future__ import annotations

from aiohttp import web

from api.access import roles
from api.auth.schemas import AdminUserOut, RolesIn, StatusIn, UserListOut, UserListQuery
from api.http import path_uuid
from api.keys import REDIS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from identity import service

admin_users = Routes(tag="admin")
ADMIN = roles("admin")


@admin_users.get("/admin/users", access=ADMIN, query=UserListQuery, responses={200: UserListOut})
async def list_users(request: web.Request, query: UserListQuery) -> UserListOut:
    """Users, newest first, filtered by email (substring), role and status."""
    page = await service.list_users(db_session(request), email=query.email, role=query.role, status=query.status,
                                    limit=query.limit, cursor=query.cursor)
    return UserListOut(items=[AdminUserOut.model_validate(user) for user in page.items], next_cursor=page.next_cursor)


@admin_users.get("/admin/users/{user_id}", access=ADMIN, responses={200: AdminUserOut})
async def get_user(request: web.Request) -> AdminUserOut:
    """One user."""
    user = await service.get_user(db_session(request), path_uuid(request, "user_id", "user_not_found"))
    return AdminUserOut.model_validate(user)


@admin_users.post("/admin/users/{user_id}/role", access=ADMIN, body=RolesIn, responses={200: AdminUserOut})
async def set_roles(request: web.Request, body: RolesIn) -> AdminUserOut:
    """Replace a user's roles; the last admin keeps the admin role."""
    user = await service.set_roles(db_session(request), request.config_dict[REDIS], current(request).user_id,
                                   path_uuid(request, "user_id", "user_not_found"), list(body.roles))
    return AdminUserOut.model_validate(user)


@admin_users.post("/admin/users/{user_id}/status", access=ADMIN, body=StatusIn, responses={200: AdminUserOut})
async def set_status(request: web.Request, body: StatusIn) -> AdminUserOut:
    """Activate or suspend a user; suspending revokes every session at once."""
    user = await service.set_status(db_session(request), request.config_dict[REDIS], current(request).user_id,
                                    path_uuid(request, "user_id", "user_not_found"), body.status)
    return AdminUserOut.model_validate(user)
