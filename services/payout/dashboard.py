"""The contributor dashboard: server-rendered pages over the data the API serves.

A contributor signs in once with its API key. The service then records a session on the
server (table dashboard_sessions: an HMAC-SHA256 of a random 256-bit token under a key
of the dashboard's own, the principal, an expiry 8 hours on) and sets a cookie holding
the token, never the API key. Reading the table yields no usable cookie, and writing it
mints none without the key. Signing
out deletes the record, so the cookie is worthless from that moment, wherever a copy of
it went; so does revoking the principal's key (principal.revoked). The cookie is
HttpOnly and SameSite=Strict, and the only state-changing requests (sign in, sign out)
are POST forms, refused when their Origin is another site's: another site can neither
read the session nor act with it.

Pages: /login, / (contributions, earnings over time, statements), /contributions/{id}
(the preprocessing report), /statements/{period} (each allocation's basis, opening,
payout and carry; .csv and .json downloads are the API's statement). Charts are inline
SVG drawn here, each followed by the table of its numbers: no JavaScript at all.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from itertools import groupby
from pathlib import Path

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from services.common.identity import Principal
from services.common.money import format_micros, format_minor
from services.common.periods import PeriodError, check_period
from services.payout import api, projection

SESSION_COOKIE = "tt_session"
SESSION_SECONDS = 8 * 3600
SESSION_TOKEN_BYTES = 32
SECRET_BYTES = 32
MAX_TOKEN_LENGTH = 128
HERE = Path(__file__).parent
# Private pages: never cached, never framed, no script, forms post only to this origin.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "same-origin",  # no-referrer would make forms post "Origin: null"
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(include_in_schema=False)


# -- sessions -------------------------------------------------------------------------


def new_session_token() -> str:
    """A session token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(SESSION_TOKEN_BYTES)


def session_digest(secret: bytes, token: str) -> str:
    """What the server stores of a token: HMAC-SHA256 under the dashboard's key."""
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def session_secret_path() -> Path:
    default = Path(os.environ.get("TT_RUN_DIR", ".run")) / "secrets" / "dashboard-session.key"
    return Path(os.environ.get("TT_DASHBOARD_SECRET_FILE", default))


def load_session_secret(path: Path) -> bytes:
    """The session key, created (32 random bytes, mode 0600) if missing. Created under a
    temporary name and linked into place, so two processes starting at once agree."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(secrets.token_bytes(SECRET_BYTES))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    secret = path.read_bytes()
    if len(secret) < SECRET_BYTES:
        raise RuntimeError(f"the dashboard session key {path} is shorter than 32 bytes")
    return secret


async def start_session(pool, secret: bytes, principal_id: str) -> str:
    """Record a session for the principal; returns its token (for the cookie only).
    Expired sessions are removed on the way."""
    token = new_session_token()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= now()")
        await conn.execute(
            "INSERT INTO dashboard_sessions (token_digest, principal_id, created_at, "
            "expires_at) VALUES ($1, $2, now(), now() + make_interval(secs => $3))",
            session_digest(secret, token),
            principal_id,
            SESSION_SECONDS,
        )
    return token


async def end_session(pool, secret: bytes, token: str) -> None:
    await pool.execute(
        "DELETE FROM dashboard_sessions WHERE token_digest = $1", session_digest(secret, token)
    )


async def session_principal(pool, secret: bytes, token: str) -> Principal | None:
    """The principal of a live session: recorded, not expired, key not revoked."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = await pool.fetchrow(
        "SELECT p.principal_id, p.role, p.name FROM dashboard_sessions s "
        "JOIN principals p ON p.principal_id = s.principal_id "
        "WHERE s.token_digest = $1 AND s.expires_at > now() AND p.revoked_at IS NULL",
        session_digest(secret, token),
    )
    return Principal(row["principal_id"], row["role"], row["name"]) if row else None


# -- what the pages show (pure) -------------------------------------------------------


def report_view(processed: dict, full_report: dict | None) -> dict:
    """A contribution's report as the page shows it: the counts of its
    contribution.processed fact (what the ledger pays by), with the quality histogram
    and the removal examples from the full report when it could be read."""
    examples = {
        (r["reason"], r.get("detail", "")): r.get("examples", [])
        for r in (full_report or {}).get("removals", [])
    }
    removals = []
    for r in processed.get("removals", []):
        reason = r["reason"].removeprefix("REMOVAL_REASON_").lower()
        detail = r.get("detail", "")
        removals.append(
            {
                "reason": reason,
                "detail": detail,
                "documents": int(r["documents"]),
                "tokens": int(r["tokens"]),
                "examples": examples.get((reason, detail), [])[:2],
            }
        )
    languages = {code: int(n) for code, n in processed.get("language_documents", {}).items()}
    histogram = (full_report or {}).get("quality_histogram", {}).get("counts") or []
    return {
        "documents": {
            "in": int(processed["documents_in"]),
            "kept": int(processed["documents_kept"]),
        },
        "tokens": {
            "raw": int(processed["tokens_raw"]),
            "accepted": int(processed["tokens_accepted"]),
        },
        "removals": removals,
        "redactions": {r["kind"]: int(r["count"]) for r in processed.get("redactions", [])},
        "languages": dict(sorted(languages.items(), key=lambda item: (-item[1], item[0]))),
        "quality_histogram": [int(count) for count in histogram],
        "tokenizer": processed.get("tokenizer", ""),
        "pipeline_version": processed.get("pipeline_version", ""),
        "rejection_reason": processed.get("rejection_reason", "")
        if processed.get("outcome") == "PROCESSING_OUTCOME_REJECTED"
        else "",
    }


def chart(title: str, rows: list[tuple[str, int, str]], ticks: list[str] | None = None) -> dict:
    """An accessible chart's data: bars of (label, value, value as shown), each drawn at
    its share of the largest value (0..1; negative values draw nothing, the table beside
    the chart shows them), with a short axis label (`ticks`, default the labels)."""
    top = max((value for _, value, _ in rows), default=0)
    bars = [
        {
            "label": label,
            "tick": ticks[index] if ticks else label,
            "text": text,
            "share": max(value, 0) / top if top > 0 else 0,
        }
        for index, (label, value, text) in enumerate(rows)
    ]
    description = "; ".join(f"{bar['label']}: {bar['text']}" for bar in bars) or "no data"
    return {"title": title, "bars": bars, "description": description}


def report_charts(report: dict) -> dict:
    tokens = [("kept", report["tokens"]["accepted"], f"{report['tokens']['accepted']:,} tokens")]
    for r in report["removals"]:
        tokens.append((_removal_label(r), r["tokens"], f"{r['tokens']:,} tokens"))
    counts = report["quality_histogram"]
    bins = len(counts)
    quality = [
        (f"{i / bins:.1f} to {(i + 1) / bins:.1f}", n, f"{n:,} documents")
        for i, n in enumerate(counts)
    ]
    languages = [(code, n, f"{n:,} documents") for code, n in report["languages"].items()]
    return {
        "tokens": chart("Tokens kept and removed, by reason", tokens),
        "languages": chart("Kept documents by language", languages),
        "quality": chart(
            "Documents by quality score (0 low, 1 high)",
            quality,
            ticks=[f"{i / bins:.1f}" for i in range(bins)],
        ),
    }


def _removal_label(removal: dict) -> str:
    reason = removal["reason"].replace("_", " ")
    return f"{reason} ({removal['detail'].replace('_', ' ')})" if removal["detail"] else reason


def earnings_charts(rows: list[dict]) -> list[dict]:
    """One chart per currency: the micro-units allocated to the contributor per period."""
    charts = []
    ordered = sorted(rows, key=lambda row: (row["currency"], row["period"]))
    for currency, series in groupby(ordered, key=lambda row: row["currency"]):
        points = [
            (
                row["period"],
                row["allocated_micros"],
                format_micros(row["allocated_micros"], currency),
            )
            for row in series
        ]
        charts.append(chart(f"Allocated per period, {currency}", points))
    return charts


def contribution_row(contribution: dict) -> dict:
    processed = contribution["processed"] or {}
    return {
        **contribution,
        "documents_in": int(processed.get("documents_in", 0)) if processed else None,
        "documents_kept": int(processed.get("documents_kept", 0)) if processed else None,
        "tokens_accepted": int(processed.get("tokens_accepted", 0)) if processed else None,
    }


# -- wiring -----------------------------------------------------------------------------


def mount(app: FastAPI) -> None:
    """Add the dashboard's pages and static files to the API's app."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(micros=format_micros, minor=format_minor, count="{:,}".format)
    app.state.dashboard_templates = Jinja2Templates(env=environment)
    app.state.dashboard_secret = load_session_secret(session_secret_path())
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)


def _page(request: Request, template: str, status: int = 200, **context) -> Response:
    templates: Jinja2Templates = request.app.state.dashboard_templates
    context.setdefault("principal", None)
    return templates.TemplateResponse(
        request, template, context, status_code=status, headers=PAGE_HEADERS
    )


async def _signed_in(request: Request) -> Principal | None:
    state = request.app.state
    return await session_principal(
        state.pool, state.dashboard_secret, request.cookies.get(SESSION_COOKIE, "")
    )


async def _contributor(request: Request) -> Principal | Response:
    """The signed-in contributor, or the response to send instead: to the login page
    without a valid session, a page saying whose key it is for other roles."""
    principal = await _signed_in(request)
    if principal is None:
        return RedirectResponse("/login", status_code=303)
    if principal.role != "contributor":
        return _page(request, "not_contributor.html", 403, principal=principal)
    return principal


def _not_found(request: Request, principal: Principal, message: str) -> Response:
    return _page(request, "not_found.html", 404, principal=principal, message=message)


@router.get("/login")
async def login_page(request: Request) -> Response:
    if await _signed_in(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _page(request, "login.html", error=None)


def _cross_site(request: Request) -> Response | None:
    """A form posted from another site is refused (SameSite=Strict keeps the session
    cookie from such posts; this also stops another site signing a browser in)."""
    origin = request.headers.get("origin")
    if origin is None or origin == f"{request.url.scheme}://{request.url.netloc}":
        return None
    return PlainTextResponse("cross-site form posts are refused", status_code=403)


@router.post("/login")
async def login(request: Request) -> Response:
    if refused := _cross_site(request):
        return refused
    form = await request.form()
    key = str(form.get("api_key", "")).strip()
    principal = await api.lookup_principal(request.app.state.pool, key)
    if principal is None:
        error = "Enter your API key." if not key else "This API key is not known to the platform."
        return _page(request, "login.html", 401, error=error)
    state = request.app.state
    token = await start_session(state.pool, state.dashboard_secret, principal.principal_id)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    if refused := _cross_site(request):
        return refused
    token = request.cookies.get(SESSION_COOKIE, "")
    if token and len(token) <= MAX_TOKEN_LENGTH:
        await end_session(request.app.state.pool, request.app.state.dashboard_secret, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/")
async def overview(request: Request) -> Response:
    principal = await _contributor(request)
    if isinstance(principal, Response):
        return principal
    pool = request.app.state.pool
    rows = await pool.fetch(
        "SELECT * FROM contributions WHERE contributor_id = $1 "
        "ORDER BY received_at NULLS LAST, contribution_id",
        principal.principal_id,
    )
    return _page(
        request,
        "overview.html",
        principal=principal,
        contributions=[contribution_row(api._contribution(row)) for row in rows],
        earnings=earnings_charts(await api.earnings(pool, principal.principal_id)),
        statements=await api.statement_periods(pool, principal.principal_id),
    )


@router.get("/contributions/{contribution_id}")
async def contribution_page(request: Request, contribution_id: str) -> Response:
    principal = await _contributor(request)
    if isinstance(principal, Response):
        return principal
    row = await request.app.state.pool.fetchrow(
        "SELECT * FROM contributions WHERE contribution_id = $1 AND contributor_id = $2",
        contribution_id,
        principal.principal_id,
    )
    if row is None:
        return _not_found(request, principal, f"You have no contribution {contribution_id}.")
    contribution = api._contribution(row)
    report = figures = None
    if contribution["processed"]:
        read_report = request.app.state.read_report
        full = read_report(row["report_uri"]) if row["report_uri"] and read_report else None
        report = report_view(contribution["processed"], full)
        figures = report_charts(report)
    return _page(
        request,
        "report.html",
        principal=principal,
        contribution=contribution,
        report=report,
        figures=figures,
    )


async def _statement(request: Request, period: str) -> tuple[Principal, dict] | Response:
    principal = await _contributor(request)
    if isinstance(principal, Response):
        return principal
    try:
        check_period(period)
    except PeriodError as error:
        return _page(request, "bad_request.html", 400, principal=principal, message=str(error))
    async with request.app.state.pool.acquire() as conn:
        return principal, await projection.statement(conn, principal.principal_id, period)


@router.get("/statements/{period}.csv")
async def statement_csv(request: Request, period: str) -> Response:
    found = await _statement(request, period)
    if isinstance(found, Response):
        return found
    return PlainTextResponse(
        api.statement_csv(found[1]),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="statement-{period}.csv"'},
    )


@router.get("/statements/{period}.json")
async def statement_json(request: Request, period: str) -> Response:
    found = await _statement(request, period)
    if isinstance(found, Response):
        return found
    return JSONResponse(
        found[1],
        headers={"Content-Disposition": f'attachment; filename="statement-{period}.json"'},
    )


@router.get("/statements/{period}")
async def statement_page(request: Request, period: str) -> Response:
    found = await _statement(request, period)
    if isinstance(found, Response):
        return found
    principal, statement = found
    rows = await request.app.state.pool.fetch(
        "SELECT contribution_id, file_name FROM contributions WHERE contributor_id = $1",
        principal.principal_id,
    )
    files = {row["contribution_id"]: row["file_name"] for row in rows}
    return _page(request, "statement.html", principal=principal, statement=statement, files=files)
