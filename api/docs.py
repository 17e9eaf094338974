"""Swagger UI at /docs, served from the pinned swagger-ui-bundle-v2 wheel: no CDN, no validator call."""

from __future__ import annotations

import json

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from api.access import PUBLIC
from api.registry import Routes

docs = Routes(tag="operations")

ASSETS = "/docs/assets"
SPEC_URL = "/api/v1/openapi-ui.json"
# Everything the page loads comes from this origin; the inline-free page keeps script-src strict.
CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'"

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>VirtuOZ API</title>
  <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js"></script>
  <script src="{ASSETS}/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""

INIT = "window.ui = SwaggerUIBundle(" + json.dumps(
    {"url": SPEC_URL, "dom_id": "#swagger-ui", "validatorUrl": None, "deepLinking": True}
) + ");\n"


@docs.get("/docs", access=PUBLIC, responses={200: "text/html"})
async def swagger_ui(request: web.Request) -> web.Response:
    """Swagger UI for this API (local assets)."""
    return web.Response(text=PAGE, content_type="text/html", headers={"Content-Security-Policy": CSP})


@docs.get("/docs/init.js", access=PUBLIC, responses={200: "text/javascript"})
async def swagger_ui_init(request: web.Request) -> web.Response:
    """The Swagger UI start-up script, pointing at /api/v1/openapi-ui.json."""
    return web.Response(text=INIT, content_type="text/javascript")


def mount_assets(app: web.Application) -> None:
    app.router.add_static(ASSETS, str(swagger_ui_path), name="docs_assets")
