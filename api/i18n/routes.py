"""Content platform previews: i18n message resolution and the CMS workflow's next status.

Messages come from the packaged bundles with the signed reload's bundles laid over them
(``LiveConfig.locale_bundles``, swapped in every API process by api/control.py).
"""

from __future__ import annotations

from aiohttp import web

from api.access import roles
from api.cms.schemas import MoveOut, NextStatusIn, NextStatusOut
from api.i18n.schemas import MessageIn, MessageOut
from api.keys import LIVE
from api.registry import Routes
from content import states
from content.i18n.catalog import catalog, resolve
from core.locales import normalize

platform_content = Routes(tag="platform")


@platform_content.post("/platform/i18n/message", access=roles("operator", "admin", "support"), body=MessageIn,
                       responses={200: MessageOut},
                       errors={404: ("message_not_found",),
                               422: ("missing_parameter", "invalid_parameter", "invalid_message")})
async def i18n_message(request: web.Request, body: MessageIn) -> MessageOut:
    """Resolve a message key in a locale (fallback `de-AT → de → en`); `params` fill `{name}` fields,
    `count` picks the plural form. Unknown key → 404; a missing parameter → 422 naming it."""
    live = request.config_dict[LIVE].locale_bundles
    resolved = resolve(catalog.bundles(live), body.key, normalize(body.locale), body.params)
    return MessageOut(message=resolved.message, locale_used=resolved.locale_used)


@platform_content.post("/platform/cms/workflow/next-status", access=roles("support", "operator", "compliance", "admin"),
                       body=NextStatusIn, responses={200: NextStatusOut})
async def cms_next_status(request: web.Request, body: NextStatusIn) -> NextStatusOut:
    """Where a CMS document in `state` goes on `action` (or whether it may move `to`), from the workflow table."""
    target = states.next_state(body.state, action=body.action, to=body.to)
    moves = [MoveOut(action=move.action, to=move.to) for move in states.allowed_moves(body.state)]
    return NextStatusOut(allowed=target is not None, next=target, allowed_moves=moves)
