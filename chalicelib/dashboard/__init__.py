"""The dashboard: one HTML page with its CSS and JavaScript inline (no build step, no
asset from another origin), served by the API at ``GET /dashboard``.

The page's Content-Security-Policy allows only its own inline script and style (by
hash), requests to its own origin and the WebSocket API's origin.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

PAGE = Path(__file__).with_name("index.html")


@functools.lru_cache(maxsize=1)
def _page() -> tuple[str, str, str]:
    html = PAGE.read_text(encoding="utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    return html, " ".join(_hash(s) for s in scripts), " ".join(_hash(s) for s in styles)


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def render(ws_url: str = "") -> tuple[str, dict[str, str]]:
    """The page and its headers. ``ws_url``: the WebSocket API (``ws://`` or ``wss://``), the
    one other origin the page may connect to."""
    html, script_hashes, style_hashes = _page()
    connect = "'self'"
    match = re.match(r"^(wss?://[^/?#]+)", ws_url or "")
    if match:
        connect += " " + match.group(1)
    csp = (
        f"default-src 'none'; script-src {script_hashes}; style-src {style_hashes}; connect-src {connect}; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": csp,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }
    return html, headers
