"""The supervision board: what a regulator watches, in a browser, read-only.

``/board`` shows entities per tier, the riskiest entities (filters: tier, region,
industry, least score), the open alerts and the latest tier changes, and refreshes
itself every 30 s; ``/board/entities/<id>`` shows one entity's score, tier and since
when, spot-check ratio, reasons with the events behind them, open alerts, disputed
items and history.
Every figure comes from the JSON API's own route functions (nothing is computed twice).

Sign-in: any token of role viewer or higher, entered once in a form (``/board/login``);
it is kept in an HttpOnly, SameSite=Strict cookie scoped to ``/board`` for 8 hours, so
a page needs no script. The pages run no script at all, and send a Content-Security-Policy
that allows none; every value from a feed (entity names come from producers) is escaped.
The rate limit and the denied-request metrics are those of the API.
"""

from __future__ import annotations

import functools
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..alerts.lifecycle import escalation_level
from ..events import OBJECTION_EFFECTS, OPERATING
from ..view import ENTITIES, entity_key
from ..view_regions import index_regions, regions_in, registered_count
from .alerts import list_alerts
from .auth import Principal, allows
from .context import REDIS_OUTAGES, ctx_of
from .entities import get_entity, get_history, list_entities
from .spotchecks import changes, draw_summary, executed_draw, latest_draws, outcomes_of, worklist_of, worklist_response

__all__ = ["router", "COOKIE"]

router = APIRouter(prefix="/board", include_in_schema=False)
COOKIE = "rw_board"
COOKIE_SECONDS = 8 * 3600
REFRESH_SECONDS = 30
_CSS = (Path(__file__).parent / "board.css").read_text(encoding="utf-8")
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _Html(str):
    """Markup built here from escaped parts: not escaped again."""


def _e(v) -> str:
    if isinstance(v, _Html):
        return v
    if v is None:
        return ""
    if isinstance(v, float):
        v = f"{v:.4g}" if abs(v) < 1 else f"{v:.1f}"
    return escape(str(v))


def _when(v) -> str:
    """An API time (ISO-8601) to the second, in UTC."""
    try:
        return datetime.fromisoformat(str(v)).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return "" if v is None else str(v)


def _link(href: str, text) -> _Html:
    return _Html(f'<a href="{escape(href)}">{_e(text)}</a>')


def _entity_link(eid: str | None) -> _Html | str:
    return _link(f"/board/entities/{quote(eid, safe='')}", eid) if eid else ""


def _table(head: list[str], rows: list[list], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{_e(empty)}</p>'
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str, who: Principal | None = None, status: int = 200,
          refresh: bool = False) -> HTMLResponse:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    scope = f", regions {'+'.join(who.regions)}" if who and who.regions else ""
    user = (f'<form method="post" action="/board/logout" class="who">{_e(who.name)} ({_e(who.role)}{scope}) '
            f'<button type="submit">sign out</button></form>') if who else ""
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)} - riskwatch</title>'
            f'<link rel="stylesheet" href="/board/board.css">{meta}</head><body>'
            f'<header><a href="/board" class="home">riskwatch supervision board</a>{user}</header>'
            f"<main><h1>{_e(title)}</h1>{body}</main></body></html>")
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _problem(e: HTTPException, who: Principal | None, refresh: bool = False) -> HTMLResponse:
    """An API error as a page: the same status, and the fields it names."""
    if isinstance(e.detail, list):
        items = "".join(f"<li>{_e('.'.join(str(x) for x in d.get('loc', [])[1:]))}: {_e(d.get('msg'))}</li>"
                        for d in e.detail)
        msg = f"<ul>{items}</ul>"
    else:
        msg = f"<p>{_e(e.detail)}</p>"
    headers = {k: v for k, v in (e.headers or {}).items() if k.lower() == "retry-after"}
    page = _page("Cannot show this", msg + '<p><a href="/board">back to the board</a></p>', who, e.status_code,
                 refresh)
    page.headers.update(headers)
    return page


def _viewer(request: Request) -> Principal | None:
    """The signed-in principal (viewer or higher), None when there is none; 429 over the rate."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    ctx = ctx_of(request)
    p = ctx.tokens.lookup(token)
    if p is None or not allows(p.role, "viewer"):
        ctx.denied.labels("bad_token" if p is None else "forbidden").inc()
        return None
    wait = ctx.limiter.take(p.token_hash)
    if wait is not None:
        ctx.denied.labels("rate_limited").inc()
        raise HTTPException(429, detail="rate limit exceeded for this token",
                            headers={"Retry-After": str(max(1, round(wait)))})
    return p


def _signed_in(request: Request) -> Principal | Response:
    """The signed-in principal, or what to answer instead: the way to the sign-in form, a 429 page."""
    try:
        who = _viewer(request)
    except HTTPException as e:
        return _problem(e, None)
    return who if who is not None else RedirectResponse("/board/login", status_code=303, headers=_HEADERS)


def _redis_outage_is_a_page(handler):
    """Redis unreachable, loading or read-only: a 503 page with ``Retry-After``, not the API's JSON."""

    @functools.wraps(handler)
    async def page(request: Request, *args, **kwargs):
        try:
            return await handler(request, *args, **kwargs)
        except REDIS_OUTAGES as exc:
            return _problem(HTTPException(503, detail=f"Redis unavailable ({type(exc).__name__}): the view cannot be "
                                                      f"read; this page tries again in {REFRESH_SECONDS} s",
                                          headers={"Retry-After": "5"}), None, refresh=True)

    return page


@router.get("/board.css")
async def css():
    return Response(_CSS, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


def _login_form(message: str = "") -> str:
    note = f'<p class="error">{_e(message)}</p>' if message else ""
    return (f"{note}<form method=\"post\" action=\"/board/login\" class=\"login\">"
            '<label>API token (role viewer or higher) <input type="password" name="token" required '
            'autocomplete="current-password"></label> <button type="submit">sign in</button></form>'
            "<p>The token is kept in a cookie for this board only (8 hours, not readable by scripts).</p>")


@router.get("/login")
async def login_page():
    return _page("Sign in", _login_form())


@router.post("/login")
async def login(request: Request):
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    ctx = ctx_of(request)
    p = ctx.tokens.lookup(token) if token else None
    if p is None or not allows(p.role, "viewer"):
        ctx.denied.labels("bad_token" if p is None else "forbidden").inc()
        why = ("no token given" if not token else "not a valid token" if p is None
               else f"role {p.role!r} may not read the board; it needs 'viewer' or higher")
        return _page("Sign in", _login_form(why), status=401)
    resp = RedirectResponse("/board", status_code=303, headers=_HEADERS)
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    resp.set_cookie(COOKIE, token, max_age=COOKIE_SECONDS, path="/board", httponly=True, samesite="strict",
                    secure=secure)
    return resp


@router.post("/logout")
async def logout():
    resp = RedirectResponse("/board/login", status_code=303, headers=_HEADERS)
    resp.delete_cookie(COOKIE, path="/board")
    return resp


def _alert_summary(a: dict) -> str:
    """The alert's summary; a peer group's surge says how many of the group had complaints (the API and
    the webhooks name them)."""
    text = (a.get("annotations") or {}).get("summary") or ""
    pg = (a.get("detail") or {}).get("peer_group")
    if isinstance(pg, dict):
        text += (f" ({pg.get('entities_with_complaints')} of the group with complaints in "
                 f"{pg.get('window_hours', 24):g} h, {pg.get('expected')} expected)")
    return text


def _top_reason(reasons: list[dict] | None) -> str:
    return reasons[0]["code"] if reasons else ""


@router.get("")
@_redis_outage_is_a_page
async def overview(request: Request, tier: str | None = None, region: str | None = None,
                   industry: str | None = None, min_score: str | None = None, q: str | None = None):
    who = _signed_in(request)
    if not isinstance(who, Principal):
        return who  # the sign-in form, or a 429 page
    ctx = ctx_of(request)
    cfg, meta = await ctx.current_config()
    tiers = [t.name for t in cfg.tiers]
    tier, region, industry, q = tier or None, region or None, industry or None, (q or "").strip() or None
    try:
        if region is not None and not (len(region) == 6 and region.isdigit()):
            raise HTTPException(422, detail=[{"loc": ["query", "region"], "msg": "a 6-digit division code"}])
        if industry is not None and len(industry) > 64:
            raise HTTPException(422, detail=[{"loc": ["query", "industry"], "msg": "at most 64 characters"}])
        if q is not None and not 2 <= len(q) <= 100:
            raise HTTPException(422, detail=[{"loc": ["query", "q"], "msg": "a name search of 2 to 100 characters"}])
        try:
            least = float(min_score) if min_score else 0.0
            if not 0.0 <= least <= 100.0:
                raise ValueError
        except ValueError:
            raise HTTPException(422, detail=[{"loc": ["query", "min_score"], "msg": "a number from 0 to 100"}]) from None
        ranked = await list_entities(request, who, tier=tier, region=region, industry=industry, min_score=least,
                                     limit=50, cursor=None, q=q)
        alerts = await list_alerts(request, who, region=region, severity=None, entity_id=None, rule=None,
                                   state="open", limit=50, escalated=None)
        recent = await changes(request, who, since=None, until=None, region=region, to_tier=None, limit=20)
        # each draw read once (its summary and its outcomes come from the same record)
        recs = await latest_draws(ctx.redis, 5)
        found = {d["id"]: await outcomes_of(ctx.redis, d, d["executed_at"]) for d in recs if d["status"] == "executed"}
        draws = [draw_summary(d) for d in recs]
        crews = {d["id"]: d["inspectors"] for d in recs}
    except HTTPException as e:
        return _problem(e, who)
    ratios = {t.name: t.ratio for t in cfg.tiers}
    if who.regions is None:
        pipe = ctx.redis.pipeline(transaction=False)
        for t in tiers:
            pipe.zcard(f"rw:rank:tier:{t}")
        pipe.scard(ENTITIES)
        *counts, registered = await pipe.execute()
    else:  # its regions' entities (registered ones per region since 2026-12-07)
        if not ctx.regions_indexed:  # a view written by an older release: indexed once per process
            await index_regions(ctx.redis)
            ctx.regions_indexed = True
        mine = await regions_in(ctx.redis, who.sees)  # read once for both counts
        counts = await _tier_counts_in(ctx.redis, mine, tiers)
        registered = await registered_count(ctx.redis, mine)
    tier_rows = [[_link("/board?" + urlencode({"tier": t}), t), n, f"{ratios[t]:.0%}"] for t, n in zip(tiers, counts)]
    tier_rows.append(["not scored yet", max(0, registered - sum(counts)),
                      f"{ratios[tiers[0]]:.0%} (drawn as tier {tiers[0]})"])
    options = "".join(f'<option value="{_e(t)}"{" selected" if t == tier else ""}>{_e(t)}</option>' for t in tiers)
    filters = (
        '<form method="get" action="/board" class="filters">'
        f'<label>name <input name="q" value="{_e(q)}" size="16" placeholder="any word of the name"></label> '
        f'<label>tier <select name="tier"><option value="">all</option>{options}</select></label> '
        f'<label>region <input name="region" value="{_e(region)}" size="6" placeholder="310104"></label> '
        f'<label>industry <input name="industry" value="{_e(industry)}" size="12"></label> '
        f'<label>least score <input name="min_score" value="{_e(min_score)}" size="4"></label> '
        '<button type="submit">filter</button> <a href="/board">clear</a></form>')
    ent_rows = [[_entity_link(e["entity_id"]),
                 e["name"] if e["status"] == OPERATING else f"{e['name']} ({e['status']})", e["industry"],
                 e["region"], e["score"], e["tier"],
                 _when(e["tier_since"]), f"{e['spotcheck_ratio']:.0%}" if e["spotcheck_ratio"] is not None else "",
                 _top_reason(e["reasons"]), _when(e["updated"])] for e in ranked["entities"]]
    alert_rows = [[a["severity"], a["status"] + (f" (escalated, level {escalation_level(a)})"
                                                 if a.get("escalated_at") else ""), a["rule"],
                   _entity_link(a["entity_id"]),
                   _alert_summary(a), _when(a["starts_at"]), a["count"]]
                  for a in alerts["alerts"]]
    change_rows = [[_when(c["ts"]), _entity_link(c.get("entity_id")), f"{c.get('from_tier')} -> {c.get('to_tier')}",
                    f"{c.get('from_ratio', 0):.0%} -> {c.get('to_ratio', 0):.0%}", c.get("score"),
                    _top_reason(c.get("reasons"))] for c in recent["changes"]]
    if who.regions is None:
        draw_rows = [_draw_row(d, found.get(d["id"])) + [_worklists(d["id"], crews[d["id"]]) if d["id"] in found
                                                         else ""] for d in draws]
        draw_head = ["draw", "task", "period", "region", "status", "selected", "spot-checked (routine)",
                     "hits: risk-weighted", "hits: control (random)", "lift", "work lists (CSV)"]
    else:  # a draw's outcomes span its whole frame: a limited token gets its regions' part of the work lists
        draw_rows = [[d["id"], d.get("task", "routine"), d["period"], d.get("region") or "all",
                      _worklists(d["id"], crews[d["id"]])] for d in draws if d["id"] in found]
        draw_head = ["draw", "task", "period", "region", f"work lists of {'+'.join(who.regions)} (CSV)"]
    shown = f" named &ldquo;{_e(q)}&rdquo;" if q else ""  # escaped: it is the visitor's input
    shown += " (filtered)" if tier or region or industry or min_score else ""
    body = (
        f'<p class="meta">config {_e(meta.get("version", cfg.version))}; refreshes every {REFRESH_SECONDS} s</p>'
        "<section><h2>Entities per tier</h2>"
        + _table(["tier", "entities", "spot-check ratio"], tier_rows, "no tiers") + "</section>"
        f"<section><h2>Riskiest entities{shown}</h2>{filters}"
        + _table(["entity", "name", "industry", "region", "score", "tier", "in tier since", "ratio", "top reason",
                  "updated"],
                 ent_rows, "no entity has a risk decision yet" if not shown else "none matches these filters")
        + f"</section><section><h2>Open alerts{' in ' + _e(region) if region else ''}</h2>"
        + _table(["severity", "status", "rule", "entity", "summary", "since", "count"], alert_rows, "no open alert")
        + f"</section><section><h2>Latest tier changes{' in ' + _e(region) if region else ''}</h2>"
        + _table(["when", "entity", "tier", "spot-check ratio", "score", "top reason"], change_rows,
                 "no tier change yet") + "</section>"
        "<section><h2>Spot-check draws: what the checks found</h2>"
        + _table(draw_head, draw_rows, "no draw yet") + "</section>")
    return _page("Supervision", body, who, refresh=True)


async def _tier_counts_in(r, regions: list[str], tiers: list[str]) -> list[int]:
    """Scored entities per tier in a limited principal's regions: their rankings, each entity's tier
    (one pipelined read per 1,000; the unlimited board reads one ZCARD per tier). The regions come from
    ``rw:registered:regions`` (a scored entity's region is its register data's); until 2026-12-07 each
    page view scanned the whole keyspace for ranking keys."""
    counts = dict.fromkeys(tiers, 0)
    for region in regions:
        ids = await r.zrange(f"rw:rank:region:{region}", 0, -1)
        for i in range(0, len(ids), 1000):
            pipe = r.pipeline(transaction=False)
            for eid in ids[i:i + 1000]:
                pipe.hget(entity_key(eid), "tier")
            for t in await pipe.execute():
                if t in counts:
                    counts[t] += 1
    return [counts[t] for t in tiers]


def _hits(st: dict) -> str:
    """``found of inspected (rate)`` for one stratum of a draw's outcomes, and how many of it were inspected
    only otherwise (prompted by a complaint, a follow-up: not counted)."""
    other = f"; {st['inspected_otherwise']} inspected otherwise, not counted" if st["inspected_otherwise"] else ""
    if not st["inspected"]:
        return f"none spot-checked of {st['selected']}{other}"
    return f"{st['found']} of {st['inspected']} ({st['hit_rate']:.0%}){other}"


def _draw_row(d: dict, out: dict | None) -> list:
    """A draw on the overview: its checks' hit rates per stratum and the lift (see
    :mod:`riskwatch.spotcheck_outcomes`); a committed draw has selected nothing yet."""
    head = [d["id"], d.get("task", "routine"), d["period"], d.get("region") or "all", d["status"]]
    if out is None:  # committed (nothing drawn yet) or withdrawn (never drawn, and why)
        first = f"capacity {d['capacity']}" if d["status"] == "committed" else d.get("withdraw_reason", "")
        return head + [first, "", "", "", ""]
    lift = f"{out['lift']:.2f}x" if out["lift"] is not None else "not yet (no control hit)"
    return head + [out["selected"], out["inspected"], _hits(out["strata"]["risk"]),
                   _hits(out["strata"]["control"]), lift]


def _worklists(draw_id: str, inspectors: list[str]) -> _Html:
    """Links to an executed draw's work list, whole and per inspector."""
    base = f"/board/draws/{quote(draw_id, safe='')}/worklist.csv"
    links = [_link(base, "all")] + [_link(f"{base}?{urlencode({'inspector': n})}", n) for n in inspectors]
    return _Html(" ".join(links))


@router.get("/draws/{draw_id}/worklist.csv")
@_redis_outage_is_a_page
async def worklist(request: Request, draw_id: str, inspector: str | None = None):
    """``GET /v1/spotchecks/draws/{id}/worklist?format=csv`` for a browser signed in to the board."""
    who = _signed_in(request)
    if not isinstance(who, Principal):
        return who
    ctx = ctx_of(request)
    try:
        if inspector is not None and not 1 <= len(inspector) <= 64:
            raise HTTPException(422, detail=[{"loc": ["query", "inspector"], "msg": "1 to 64 characters"}])
        rec = await executed_draw(ctx.redis, draw_id, inspector)
    except HTTPException as e:
        return _problem(e, who)
    rows = [x for x in await worklist_of(ctx.redis, rec, inspector) if who.sees(x["region"])]
    resp = worklist_response(rows, draw_id, inspector)
    resp.headers.update({k: v for k, v in _HEADERS.items() if k != "Content-Security-Policy"})
    return resp


@router.get("/entities/{entity_id}")
@_redis_outage_is_a_page
async def entity(request: Request, entity_id: str):
    who = _signed_in(request)
    if not isinstance(who, Principal):
        return who  # the sign-in form, or a 429 page
    try:
        e = await get_entity(request, entity_id, who)
        hist = await get_history(request, entity_id, who, limit=50)
    except HTTPException as exc:
        return _problem(exc, who)
    status = e["status"] if e["status_since"] is None else f"{e['status']} since {_when(e['status_since'])}"
    facts = [["entity id", e["entity_id"]], ["name", e["name"]], ["address", e["address"] or ""],
             ["register status", status], ["industry", e["industry"]], ["region", e["region"]],
             ["score", e["score"]], ["tier", e["tier"]], ["in tier since", _when(e["tier_since"])],
             ["spot-check ratio", f"{e['spotcheck_ratio']:.0%}" if e["spotcheck_ratio"] is not None else ""],
             ["updated", _when(e["updated"])], ["config version", e["config_version"]]]
    reasons = [[r["code"], r["contribution"], f"{r['share']:.0%}", r["signal"], ", ".join(r["event_ids"])]
               for r in e["reasons"]]
    alerts = [[a["severity"], a["status"], a["rule"], a["summary"], a["count"]] for a in e["open_alerts"]]
    disputed = [[d["target_kind"], d["target_id"], d["objection_id"], _when(d["since"]),
                 OBJECTION_EFFECTS.get(d["effect"], "not applied yet")] for d in e["disputed"]]
    history = [[_when(h.get("ts")), h.get("score"), h.get("tier"),
                h.get("cause", "") + (f" (contest: {h['objection']})" if h.get("objection") else "")]
               for h in hist["history"]]
    body = (
        "<section>" + _table(["", ""], facts, "") + "</section>"
        "<section><h2>Why: reasons</h2>"
        + _table(["reason", "points", "share", "signal", "events behind it"], reasons, "no reason: score 0")
        + "</section><section><h2>Open alerts</h2>"
        + _table(["severity", "status", "rule", "summary", "count"], alerts, "no open alert")
        + "</section><section><h2>Disputed (objections open)</h2>"
        + _table(["item", "id", "objection", "since", "effect on the score"], disputed, "nothing disputed")
        + "</section><section><h2>History (newest first)</h2>"
        + _table(["when", "score", "tier", "cause"], history, "no history") + "</section>")
    return _page(e["name"] or e["entity_id"], body, who)
