"""The pieces every console page is made of: the page around it, escaping, values shown as
JSON with readable names, forms with their CSRF token, links.

Everything that comes from users (queue names, job ids, payloads, error messages) goes
through :func:`esc` or :func:`json_block`; there is no other way into a page.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from urllib.parse import quote, urlencode

from ckptd.core.timefmt import format_duration, utc_iso

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#fafbfc}
header{background:#24292f;color:#fff;padding:.5em 1.5em;display:flex;gap:1.2em;
align-items:center;flex-wrap:wrap} header a{color:#fff;text-decoration:none}
header .who{margin-left:auto;color:#d0d7de} header form{display:inline;margin:0}
main{padding:1em 1.5em}
h1{font-size:1.4em;margin:0 0 .2em} h2{font-size:1.15em;margin:1.4em 0 .4em}
h3{font-size:1em;margin:1em 0 .3em}
.meta{color:#5b6670;margin-bottom:.6em}
table{border-collapse:collapse;background:#fff;margin:.3em 0}
th,td{border:1px solid #d8dde2;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f4} td.n{text-align:right;font-variant-numeric:tabular-nums}
.failed{color:#b42318} .done{color:#1a7f37} .muted{color:#5b6670}
.zero{color:#8c959f} .tag{display:inline-block;border-radius:3px;padding:0 .35em;
font-size:.85em;margin-left:.3em} .tag.paused{background:#fff1c2;color:#7a4d00}
.tag.limited{background:#ddf4ff;color:#0a3069} .tag.draining{background:#ffe2d6;color:#8a2a00}
pre{background:#fff;border:1px solid #d8dde2;padding:.6em;overflow:auto;max-height:30em;
margin:.2em 0}
.charts{display:flex;gap:1.5em;flex-wrap:wrap} .chart{background:#fff;border:1px solid #d8dde2}
ul.explain li{margin:.2em 0} a{color:#0b5cad}
form.inline{display:inline} .flash{background:#dafbe1;border:1px solid #4ac26b;padding:.4em .8em}
.flash.error{background:#ffebe9;border-color:#ff8182}
.bar{background:#eef1f4;width:8em;height:.8em;display:inline-block;vertical-align:middle}
.bar i{background:#2da44e;height:100%;display:block}
input,select,button{font:inherit} fieldset{border:1px solid #d8dde2;background:#fff}
"""


def esc(value: object) -> str:
    """``value`` as text safe inside HTML (and inside quoted attributes)."""
    return escape(str(value), quote=True)


def dur(value: float | None) -> str:
    """Seconds as people read them (``1m 30s``); ``-`` for None."""
    return "-" if value is None else format_duration(float(value))


def when(stamp: float | None) -> str:
    """A UNIX time as ``YYYY-MM-DD HH:MM:SSZ``; ``-`` for None."""
    return "-" if stamp is None else utc_iso(stamp)[:19].replace("T", " ") + "Z"


def href(*parts: str, **query: object) -> str:
    """A path of escaped parts with a query: ``href("job", q, id)`` -> ``/job/q/id``."""
    path = "/" + "/".join(quote(p, safe="") for p in parts)
    given = {k: v for k, v in query.items() if v not in (None, "")}
    return path + ("?" + urlencode(given) if given else "")


def link(text: str, url: str) -> str:
    """An ``<a>`` with escaped text and address."""
    return f'<a href="{esc(url)}">{esc(text)}</a>'


def readable(name: str) -> str:
    """A field name as a person reads it: ``checkpoint_age_s`` -> ``checkpoint age``."""
    for suffix, unit in (("_s", ""), ("_ms", " (ms)")):
        if name.endswith(suffix):
            name = name[: -len(suffix)] + unit
    return name.replace("_", " ")


def json_block(value: object, limit: int = 64 * 1024) -> str:
    """``value`` as indented JSON in a ``<pre>`` (cut past ``limit`` characters)."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)
    if len(text) > limit:
        text = text[:limit] + "\n... (cut)"
    return f"<pre>{esc(text)}</pre>"


def facts_table(facts: Mapping[str, object], css_id: str = "") -> str:
    """A table of named values: readable names, values as JSON (durations as durations)."""
    rows = []
    for key, value in facts.items():
        if key.endswith("_s") and isinstance(value, (int, float)):
            shown = esc(dur(value))
        else:
            shown = esc(json.dumps(value, ensure_ascii=False, default=str))
        rows.append(f"<tr><th>{esc(readable(key))}</th><td>{shown}</td></tr>")
    ident = f' id="{esc(css_id)}"' if css_id else ""
    return f"<table{ident}>{''.join(rows)}</table>"


def hidden(fields: Mapping[str, object]) -> str:
    """Hidden inputs of a form."""
    return "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
                   for k, v in fields.items() if v is not None)


def button_form(action: str, label: str, csrf: str, fields: Mapping[str, object],
                css_class: str = "") -> str:
    """A one-button POST form (its CSRF token included)."""
    cls = f' class="{esc(css_class)}"' if css_class else ""
    return (f'<form class="inline" method="post" action="{esc(action)}">'
            f"{hidden({**fields, 'csrf': csrf})}<button type=\"submit\"{cls}>{esc(label)}"
            "</button></form>")


def page(title: str, body: str, *, nav: str = "", live: bool = False,
         flash: str | None = None, flash_error: bool = False) -> str:
    """A whole page; with ``live`` its main part is refreshed in place every 2 s."""
    note = ""
    if flash:
        note = f'<p class="flash{" error" if flash_error else ""}" id="flash">{esc(flash)}</p>'
    attr = ' data-live="1"' if live else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style>"
            '<script src="/static/console.js" defer></script></head>'
            f"<body>{nav}<main>{note}<div id=\"live\"{attr}>{body}</div></main></body></html>\n")


def nav_bar(user: str | None, role: str | None, csrf: str, actions_on: bool) -> str:
    """The bar at the top: the pages, and who is logged in."""
    links = "".join(f'<a href="{u}">{t}</a>' for t, u in (
        ("ckptd", "/"), ("running", "/running"), ("search", "/search"),
        ("workers", "/workers"), ("audit", "/audit"), ("metrics", "/metrics")))
    mode = "actions on" if actions_on else "read-only"
    if user:
        who = (f'<span class="who">{esc(user)} ({esc(role)}) &middot; {mode} '
               f'{button_form("/logout", "log out", csrf, {})}</span>')
    else:
        who = f'<span class="who">{mode} &middot; <a href="/login">log in</a></span>'
    return f"<header>{links}{who}</header>"


class Viewer:
    """Who looks at a page: what its forms carry, and which buttons it gets."""

    def __init__(self, *, csrf: str, user: str | None = None, role: str | None = None,
                 may_act: bool = False, actions_on: bool = False) -> None:
        self.csrf = csrf
        self.user = user
        self.role = role
        self.may_act = may_act  # logged in as an operator, and actions are on
        self.actions_on = actions_on

    def nav(self) -> str:
        """The bar at the top of a page for this viewer."""
        return nav_bar(self.user, self.role, self.csrf, self.actions_on)

    def button(self, label: str, fields: Mapping[str, object], action: str = "/action"
               ) -> str:
        """A one-button action form, or nothing when this viewer may not act."""
        return button_form(action, label, self.csrf, fields) if self.may_act else ""
