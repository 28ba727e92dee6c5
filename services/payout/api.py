"""The platform's HTTP API (FastAPI), served by the payout service.

Every /v1 call is authenticated by an API key (`Authorization: Bearer tt_...`) and
authorised by role:

| who | sees |
|---|---|
| contributor | its own contributions (with reports), allocations and statements: /v1/me/... |
| consumer | aggregates: revenue events with pool, allocated and how many contributions |
| auditor | everything, read-only |
| operator | everything, and starts payout runs |

A contributor asking for another contributor's data gets 404, exactly as for data that
does not exist; a consumer sees the revenue of its own agreements only. Errors are JSON:
{"error": {"code": ..., "message": ...}} with a message a person can act on; an id or a
period the platform could never hold (a control character, an overlong value, a month
outside 2000-01..2199-12) is a 400, never a 500. Every response says `Cache-Control:
no-store` (static files aside) and `X-Content-Type-Options: nosniff`; CSV cells that a
spreadsheet would read as a formula are neutralised. OpenAPI: /docs and /openapi.json.
The service's metrics are not here: they are served on TT_METRICS_ADDRESS (see main).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.db import FACT_REFUSED_BY_DATABASE, describe_refusal, refused_by_database
from services.common.identity import (
    Principal,
    api_key_from_authorization,
    api_key_sha256,
    with_article,
)
from services.common.money import format_micros, format_minor
from services.common.periods import PeriodError, check_period
from services.common.validation import MAX_ID_LENGTH
from services.payout import projection

log = logging.getLogger(__name__)
PERIOD_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
# An id in a path or a query: one line of printable text, as every fact's ids are
# (services.common.validation), so a value no fact could carry never reaches a query.
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"


class ApiError(HTTPException):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(status_code=status, detail={"code": code, "message": message})


def _error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _accepted_period(period: str) -> str:
    """A period within the accepted months, or a ValueError FastAPI turns into a 400."""
    try:
        return check_period(period)
    except PeriodError as error:
        raise ValueError(str(error)) from None


class PayoutRunRequest(BaseModel):
    period: Annotated[
        str, Field(pattern=PERIOD_PATTERN, examples=["2026-11"]), AfterValidator(_accepted_period)
    ]


async def lookup_principal(pool: asyncpg.Pool, api_key: str | None) -> Principal | None:
    """The principal holding `api_key`, unless the key is unknown or revoked."""
    if not api_key:
        return None
    row = await pool.fetchrow(
        "SELECT principal_id, role, name FROM principals WHERE api_key_sha256 = $1 "
        "AND revoked_at IS NULL",
        api_key_sha256(api_key),
    )
    return Principal(row["principal_id"], row["role"], row["name"]) if row else None


# Declares the scheme in the OpenAPI document; the header is parsed below, so that a
# missing or malformed one gets a message that says what to send.
_BEARER = HTTPBearer(auto_error=False, description="an API key: Authorization: Bearer tt_...")


async def current_principal(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)] = None,
) -> Principal:
    header = request.headers.get("authorization")
    if not header:
        raise ApiError(
            401, "unauthenticated", "send your API key as 'Authorization: Bearer tt_...'"
        )
    key = api_key_from_authorization(header)
    if key is None:
        raise ApiError(
            401,
            "unauthenticated",
            "the Authorization header must be 'Bearer ' followed by a tt_ API key",
        )
    principal = await lookup_principal(request.app.state.pool, key)
    if principal is None:
        raise ApiError(401, "unauthenticated", "this API key is not known to the platform")
    return principal


def require(*roles: str) -> Callable:
    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in roles:
            raise ApiError(
                403,
                "forbidden",
                f"this endpoint is for the {' or '.join(roles)} role; your key belongs to "
                f"{principal.name!r}, {with_article(principal.role)}",
            )
        return principal

    return check


Contributor = Annotated[Principal, Depends(require("contributor"))]
Staff = Annotated[Principal, Depends(require("operator", "auditor"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Aggregates = Annotated[Principal, Depends(require("consumer", "operator", "auditor"))]
Anyone = Annotated[Principal, Depends(current_principal)]
Period = Annotated[
    str,
    Query(pattern=PERIOD_PATTERN, description="a month, YYYY-MM"),
    AfterValidator(_accepted_period),
]
PathPeriod = Annotated[str, Path(description="a month, YYYY-MM")]
PathId = Annotated[str, Path(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]
QueryId = Annotated[str | None, Query(max_length=MAX_ID_LENGTH, pattern=ID_PATTERN)]

# Private responses: never stored by a browser or a proxy, never sniffed as another type.
PRIVATE_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))


def internal_error_response(request: Request, error: BaseException) -> JSONResponse:
    """A 500 that tells the caller nothing of the error but a correlation id, under which
    the details are logged."""
    correlation_id = uuid.uuid4().hex
    log.error(
        "unexpected error answering %s %s (correlation id %s)",
        request.method,
        request.url.path,
        correlation_id,
        exc_info=error,
    )
    return JSONResponse(
        _error_body(
            "internal",
            f"the platform failed to answer; quote correlation id {correlation_id} when you "
            "report it",
        ),
        status_code=500,
        headers={"X-Correlation-Id": correlation_id},
    )


class PrivateResponseHeaders:
    """ASGI middleware: every response carries PRIVATE_HEADERS (unless it set its own
    Cache-Control), except the dashboard's static files, which are public and cacheable
    (they still get nosniff). An exception no handler answered becomes a generic 500
    here (internal_error_response), before it could reach the server's default page."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        public = scope["path"].startswith("/static/")
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in PRIVATE_HEADERS:
                    if name in present or (public and name == b"cache-control"):
                        continue
                    headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as error:
            if started:
                raise
            response = internal_error_response(Request(scope), error)
            await response(scope, receive, send_with_headers)


def create_app(pool: asyncpg.Pool, read_report: Callable[[str], dict] | None = None) -> FastAPI:
    app = FastAPI(
        title="1TT Platform API",
        version="1",
        description=__doc__,
        openapi_tags=[
            {"name": "me", "description": "the calling contributor's own data"},
            {"name": "platform", "description": "aggregates and operator actions"},
            {"name": "health", "description": "probes"},
        ],
    )
    app.state.pool = pool
    app.state.read_report = read_report
    app.state.ready = False
    app.add_middleware(PrivateResponseHeaders)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        detail = error.detail
        if isinstance(detail, dict) and "code" in detail:
            body = _error_body(detail["code"], detail["message"])
        else:
            code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
            body = _error_body(code, str(detail))
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"] if part not in ("body", "query"))
            message = item["msg"].removeprefix("Value error, ")
            if "pattern" in message and ("period" in where or where.endswith("period")):
                message = "must be a month written YYYY-MM, e.g. 2026-11"
            elif "pattern" in message:
                message = "must be one line of printable text"
            problems.append(f"{where}: {message}")
        return JSONResponse(_error_body("invalid_request", "; ".join(problems)), status_code=400)

    async def refused_value(request: Request, error: Exception):
        """A value PostgreSQL refuses is the request's fault: 400."""
        if not refused_by_database(error):
            return internal_error_response(request, error)
        log.info("%s %s: %s", request.method, request.url.path, describe_refusal(error))
        return JSONResponse(
            _error_body(
                "invalid_request",
                "a value in the request cannot be stored or compared by the platform "
                "(check the ids and periods for control characters and length)",
            ),
            status_code=400,
        )

    for refused in (*FACT_REFUSED_BY_DATABASE, asyncpg.ProgramLimitExceededError):
        app.add_exception_handler(refused, refused_value)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        try:
            await pool.fetchval("SELECT 1")
        except (OSError, asyncpg.PostgresError) as error:
            return JSONResponse({"status": f"database unavailable: {error}"}, status_code=503)
        if not app.state.ready:
            return JSONResponse({"status": "consumer starting"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/v1/me", tags=["me"])
    async def me(principal: Anyone) -> dict:
        return {
            "principal_id": principal.principal_id,
            "role": principal.role,
            "name": principal.name,
        }

    @app.get("/v1/me/contributions", tags=["me"])
    async def my_contributions(principal: Contributor) -> dict:
        rows = await pool.fetch(
            "SELECT * FROM contributions WHERE contributor_id = $1 "
            "ORDER BY received_at NULLS LAST, contribution_id",
            principal.principal_id,
        )
        return {"contributions": [_contribution(row) for row in rows]}

    @app.get("/v1/me/contributions/{contribution_id}", tags=["me"])
    async def my_contribution(contribution_id: PathId, principal: Contributor) -> dict:
        row = await pool.fetchrow(
            "SELECT * FROM contributions WHERE contribution_id = $1 AND contributor_id = $2",
            contribution_id,
            principal.principal_id,
        )
        if row is None:
            raise ApiError(404, "not_found", f"you have no contribution {contribution_id}")
        body = _contribution(row)
        body["report"] = None
        if row["report_uri"] and app.state.read_report is not None:
            body["report"] = app.state.read_report(row["report_uri"])
        return body

    @app.get("/v1/me/allocations", tags=["me"])
    async def my_allocations(principal: Contributor, period: Period | None = None) -> dict:
        rows = await pool.fetch(
            "SELECT * FROM allocations WHERE contributor_id = $1 AND ($2::text IS NULL OR "
            "period = $2) ORDER BY period, service_id, revenue_id, contribution_id",
            principal.principal_id,
            period,
        )
        return {"allocations": [_allocation(row) for row in rows]}

    @app.get("/v1/me/earnings", tags=["me"])
    async def my_earnings(principal: Contributor) -> dict:
        return {"earnings": await earnings(pool, principal.principal_id)}

    @app.get("/v1/me/statements", tags=["me"])
    async def my_statements(principal: Contributor) -> dict:
        return {"periods": await statement_periods(pool, principal.principal_id)}

    @app.get("/v1/me/statements/{period}", tags=["me"])
    async def my_statement(period: PathPeriod, principal: Contributor, format: str = "json") -> Any:
        return await _statement_response(pool, principal.principal_id, period, format)

    @app.get("/v1/contributors/{contributor_id}/statements/{period}", tags=["platform"])
    async def contributor_statement(
        contributor_id: PathId, period: PathPeriod, principal: Staff, format: str = "json"
    ) -> Any:
        exists = await pool.fetchval(
            "SELECT 1 FROM principals WHERE principal_id = $1 AND role = 'contributor'",
            contributor_id,
        )
        if not exists:
            raise ApiError(404, "not_found", f"no contributor {contributor_id}")
        return await _statement_response(pool, contributor_id, period, format)

    @app.get("/v1/allocations", tags=["platform"])
    async def all_allocations(
        principal: Staff, period: Period | None = None, revenue_id: QueryId = None
    ) -> dict:
        rows = await pool.fetch(
            "SELECT * FROM allocations WHERE ($1::text IS NULL OR period = $1) AND "
            "($2::text IS NULL OR revenue_id = $2) "
            "ORDER BY period, service_id, revenue_id, contribution_id",
            period,
            revenue_id,
        )
        return {"allocations": [_allocation(row) for row in rows]}

    @app.get("/v1/revenue", tags=["platform"])
    async def revenue(principal: Aggregates) -> dict:
        """Revenue events with their pools. A consumer sees those of its own agreements
        only (an allocation whose agreement is not known here is shown to staff only)."""
        consumer = principal.principal_id if principal.role == "consumer" else None
        rows = await pool.fetch(
            "SELECT a.revenue_id, a.service_id, a.period, a.currency, "
            "max(a.pool_micros) AS pool_micros, sum(a.allocated_micros) AS allocated_micros, "
            "count(*) AS contributions, count(DISTINCT a.contributor_id) AS contributors "
            "FROM allocations a LEFT JOIN agreements g ON g.agreement_id = a.agreement_id "
            "WHERE $1::text IS NULL OR g.consumer_id = $1 "
            "GROUP BY a.revenue_id, a.service_id, a.period, a.currency "
            "ORDER BY a.period, a.revenue_id",
            consumer,
        )
        return {
            "revenue": [
                {
                    **dict(row),
                    "allocated_micros": int(row["allocated_micros"]),
                    "pool": format_micros(row["pool_micros"], row["currency"]),
                }
                for row in rows
            ]
        }

    @app.get("/v1/payouts", tags=["platform"])
    async def payouts(principal: Staff, period: Period | None = None) -> dict:
        rows = await pool.fetch(
            "SELECT p.*, (SELECT count(*) FROM payout_allocations a WHERE a.payout_id = "
            "p.payout_id) AS allocations FROM payouts p WHERE ($1::text IS NULL OR "
            "p.period = $1) ORDER BY p.period, p.contributor_id, p.currency",
            period,
        )
        return {
            "payouts": [{**dict(row), "issued_at": row["issued_at"].isoformat()} for row in rows]
        }

    @app.post("/v1/payout-runs", tags=["platform"], status_code=200)
    async def payout_run(request: PayoutRunRequest, principal: Operator) -> dict:
        async with pool.acquire() as conn:
            try:
                return await projection.run_payouts(conn, request.period)
            except projection.PayoutRunError as error:
                raise ApiError(409, "conflict", str(error)) from None

    from services.payout.dashboard import mount  # not at the top: it imports this module

    mount(app)
    return app


async def _statement_response(pool: asyncpg.Pool, contributor_id: str, period: str, fmt: str):
    try:
        check_period(period)
    except PeriodError as error:
        raise ApiError(400, "invalid_request", str(error)) from None
    if fmt not in ("json", "csv"):
        raise ApiError(400, "invalid_request", f"format must be json or csv, got {fmt!r}")
    async with pool.acquire() as conn:
        body = await projection.statement(conn, contributor_id, period)
    if fmt == "json":
        return body
    return PlainTextResponse(
        statement_csv(body),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="statement-{period}.csv"'},
    )


# A cell a spreadsheet would evaluate as a formula (OWASP's "CSV injection"): text that
# begins with one of these. Integers are written as they are: "-1500" is a number.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a string that starts like a formula
    gets a leading apostrophe. Numbers and empty cells are left alone."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class _SafeCsvWriter:
    """csv.writer whose rows go through csv_cell: every CSV the API writes uses it."""

    def __init__(self, out: io.StringIO):
        self._writer = csv.writer(out)

    def writerow(self, row: list) -> None:
        self._writer.writerow([csv_cell(value) for value in row])


def statement_csv(body: dict) -> str:
    out = io.StringIO()
    writer = _SafeCsvWriter(out)
    writer.writerow(
        [
            "currency",
            "status",
            "line",
            "period",
            "service_id",
            "revenue_id",
            "contribution_id",
            "weight",
            "total_weight",
            "pool_micros",
            "amount_micros",
            "amount_minor",
        ]
    )
    for section in body["statements"]:
        currency, status = section["currency"], section["status"]
        writer.writerow(
            [
                currency,
                status,
                "opening_carried",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                section["opening_carried_micros"],
                "",
            ]
        )
        for a in section["allocations"]:
            writer.writerow(
                [
                    currency,
                    status,
                    "allocation",
                    a["period"],
                    a["service_id"],
                    a["revenue_id"],
                    a["contribution_id"],
                    a["weight"],
                    a["total_weight"],
                    a["pool_micros"],
                    a["allocated_micros"],
                    "",
                ]
            )
        writer.writerow(
            [
                currency,
                status,
                "payout",
                body["period"],
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                section["amount_minor"],
            ]
        )
        writer.writerow(
            [
                currency,
                status,
                "closing_carried",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                section["closing_carried_micros"],
                "",
            ]
        )
    return out.getvalue()


async def statement_periods(pool: asyncpg.Pool, contributor_id: str) -> list[dict]:
    """The periods a contributor has a statement for: every payout period, and the
    periods of allocations not yet paid (provisional)."""
    rows = await pool.fetch(
        "SELECT period, currency, amount_minor, carried_forward_micros, 'issued' AS status "
        "FROM payouts WHERE contributor_id = $1 UNION ALL SELECT max(a.period), a.currency, "
        "NULL, NULL, 'provisional' FROM allocations a WHERE a.contributor_id = $1 AND NOT "
        "EXISTS (SELECT 1 FROM payout_allocations p WHERE p.allocation_id = a.allocation_id) "
        "GROUP BY a.currency ORDER BY 1 DESC, 2",
        contributor_id,
    )
    return [
        {
            "period": row["period"],
            "currency": row["currency"],
            "status": row["status"],
            "amount_minor": row["amount_minor"],
            "amount": format_minor(row["amount_minor"], row["currency"])
            if row["amount_minor"] is not None
            else None,
        }
        for row in rows
    ]


async def earnings(pool: asyncpg.Pool, contributor_id: str) -> list[dict]:
    """Allocated micro-units per period and currency: the earnings-over-time series."""
    rows = await pool.fetch(
        "SELECT period, currency, sum(allocated_micros) AS micros FROM allocations "
        "WHERE contributor_id = $1 GROUP BY period, currency ORDER BY period, currency",
        contributor_id,
    )
    return [
        {"period": r["period"], "currency": r["currency"], "allocated_micros": int(r["micros"])}
        for r in rows
    ]


def _contribution(row: asyncpg.Record) -> dict:
    processed = json.loads(row["processed"]) if row["processed"] else None
    state = "withdrawn" if row["withdrawn_at"] else ("processed" if processed else "received")
    return {
        "contribution_id": row["contribution_id"],
        "dataset_name": row["dataset_name"],
        "file_name": row["file_name"],
        "byte_size": row["byte_size"],
        "received_at": row["received_at"].isoformat() if row["received_at"] else None,
        "state": state,
        "withdrawn_at": row["withdrawn_at"].isoformat() if row["withdrawn_at"] else None,
        "processed": processed,
    }


def _allocation(row: asyncpg.Record) -> dict:
    return {
        "allocation_id": row["allocation_id"],
        "revenue_id": row["revenue_id"],
        "service_id": row["service_id"],
        "period": row["period"],
        "contribution_id": row["contribution_id"],
        "contributor_id": row["contributor_id"],
        "currency": row["currency"],
        "allocated_micros": row["allocated_micros"],
        "weight": row["weight"],
        "total_weight": row["total_weight"],
        "pool_micros": row["pool_micros"],
    }
