"""The CMS document as a pure fold over its audit events, registered for the admin replay.

A document is one (kind, slug, locale); its versions are immutable rows of their own. The fold
follows its state, its latest version and the version the public reads.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from content.models import CmsDocument
from content.service import AGGREGATE
from core import audit

State = dict[str, Any]


def reduce_document(state: State | None, event: dict[str, Any]) -> State | None:
    data = event["data"]
    state = {"published_version": None, **(state or {}),
             "kind": data["kind"], "slug": data["slug"], "locale": data["locale"]}
    match event["type"]:
        case "cms.draft_saved":
            state.update(state="draft", current_version=data["version"])
        case "cms.transitioned":
            state.update(state=data["to"], current_version=data["version"])
            if data["to"] == "archived":  # withdrawn: nothing is public any more
                state["published_version"] = None
        case "cms.published" | "cms.rolled_back":
            state.update(state="published", current_version=data["version"],
                         published_version=data["version"])
    return state


async def stored_document(session: AsyncSession, aggregate_id: str) -> State | None:
    document = await audit.stored_row(session, CmsDocument, aggregate_id)
    if document is None:
        return None
    return {"kind": document.kind, "slug": document.slug, "locale": document.locale, "state": document.state,
            "current_version": document.current_version, "published_version": document.published_version}

audit.register_projection(AGGREGATE, reduce_document, stored_document)
