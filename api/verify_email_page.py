"""The devnet's stand-in for the integrator's front end: `/verify-email`, where the emailed link lands.

In production the link points at the integrator's front end (`VIRTUOZ_PUBLIC_URL`), which posts the
token to `POST /api/v1/auth/email/verify`; the devnet has no front end, so the API serves this page
there (mounted only when `VIRTUOZ_ENV=devnet`). The page does nothing on load: the token is posted
when the user presses the button, so a mail scanner that opens (or even renders) links verifies
nothing. Its script is a file of its own, so the page's policy allows scripts from this origin
only and no inline code; the token is taken out of the address bar once read.
"""

from __future__ import annotations

from aiohttp import web

from api.access import PUBLIC
from api.registry import Routes

verify_email_page = Routes(tag="operations")

PAGE_PATH = "/verify-email"
SCRIPT_PATH = "/verify-email.js"
VERIFY_URL = "/api/v1/auth/email/verify"
CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'")

PAGE = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Confirm your email address · VirtuOZ devnet</title>
</head>
<body>
  <h1>Confirm your email address</h1>
  <p>This is the devnet's stand-in for your front end's <code>/verify-email</code> page.</p>
  <button id="confirm" type="button" disabled>Confirm my email address</button>
  <p id="result" role="status"></p>
  <script src="{SCRIPT_PATH}"></script>
</body>
</html>
"""

SCRIPT = f""""use strict";
(function () {{
  var token = new URLSearchParams(window.location.search).get("token") || "";
  var button = document.getElementById("confirm");
  var result = document.getElementById("result");
  // Out of the address bar and the history once read: the token is a credential until it is used.
  window.history.replaceState(null, "", window.location.pathname);
  if (!token) {{
    result.textContent = "This link has no token: open the link from the email again.";
    return;
  }}
  button.disabled = false;
  button.addEventListener("click", function () {{
    button.disabled = true;
    result.textContent = "Confirming…";
    fetch("{VERIFY_URL}", {{
      method: "POST", credentials: "omit", headers: {{"Content-Type": "application/json"}},
      body: JSON.stringify({{token: token}})
    }}).then(function (answer) {{
      return answer.json().catch(function () {{ return {{}}; }}).then(function (body) {{
        if (answer.ok) {{
          result.textContent = "Your email address is confirmed. You can close this page.";
          return;
        }}
        var code = body.error ? body.error.code : String(answer.status);
        result.textContent = code === "invalid_token"
          ? "This link is expired, was already used or was replaced by a newer one: ask for a new one from your account."
          : "The confirmation failed (" + code + "): try again.";
        button.disabled = code === "invalid_token";
      }});
    }}).catch(function () {{
      result.textContent = "The platform could not be reached: try again.";
      button.disabled = false;
    }});
  }});
}})();
"""


@verify_email_page.get(PAGE_PATH, access=PUBLIC, responses={200: "text/html"})
async def verify_email_page_html(request: web.Request) -> web.Response:
    """The devnet's page for the emailed verification link: posts its token to /api/v1/auth/email/verify."""
    return web.Response(text=PAGE, content_type="text/html", headers={"Content-Security-Policy": CSP})


@verify_email_page.get(SCRIPT_PATH, access=PUBLIC, responses={200: "text/javascript"})
async def verify_email_page_script(request: web.Request) -> web.Response:
    """The script of the devnet's /verify-email page."""
    return web.Response(text=SCRIPT, content_type="text/javascript")
