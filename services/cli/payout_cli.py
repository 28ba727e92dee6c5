"""`1tt payout run` and `1tt statement`: clients of the payout service's HTTP API
(TT_PAYOUT_URL, default http://127.0.0.1:8000), authenticated by the caller's key."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

from services.common.money import format_micros, format_minor

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiCallError(RuntimeError):
    pass


def add_parsers(commands) -> None:
    payout = commands.add_parser("payout", help="payout runs (operator)").add_subparsers(
        dest="payout_command", required=True
    )
    run = payout.add_parser("run", help="settle every contributor's unpaid allocations")
    run.add_argument("--period", required=True, metavar="YYYY-MM")
    run.add_argument("--json", action="store_true")
    run.add_argument("--api-key", default=None, help="an operator's key (default: $TT_API_KEY)")
    statement = commands.add_parser("statement", help="your statement for a period")
    statement.add_argument("--period", required=True, metavar="YYYY-MM")
    statement.add_argument("--format", choices=["text", "json", "csv"], default="text")
    statement.add_argument(
        "--contributor", help="(operator, auditor) a contributor's id; default: your own"
    )
    statement.add_argument("--api-key", default=None, help="default: $TT_API_KEY")


def call(method: str, path: str, api_key: str | None, body: dict | None = None) -> bytes:
    base = os.environ.get("TT_PAYOUT_URL", DEFAULT_URL).rstrip("/")
    if not api_key:
        raise ApiCallError("an API key is needed: set TT_API_KEY or --api-key")
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = error.reason
        raise ApiCallError(f"{message} (HTTP {error.code})") from None
    except (urllib.error.URLError, OSError) as error:
        raise ApiCallError(
            f"cannot reach the payout service at {base} ({error}); is it running? "
            "`make up` starts it"
        ) from None


def run(args) -> int:
    api_key = args.api_key or os.environ.get("TT_API_KEY")
    if args.command == "payout":
        result = json.loads(call("POST", "/v1/payout-runs", api_key, {"period": args.period}))
        if args.json:
            print(json.dumps(result, sort_keys=True))
            return 0
        print(f"payout run {result['payout_run_id']} for {result['period']}:")
        for p in result["issued"]:
            print(
                f"  {p['contributor_id']}  {format_minor(p['amount_minor'], p['currency'])} "
                f"paid, {format_micros(p['carried_forward_micros'], p['currency'])} carried "
                f"({p['allocations']} allocations; {p['outcome']})"
            )
        if result["already_issued"]:
            print(f"  {result['already_issued']} contributor(s) already paid for this period")
        for held in result.get("held", []):
            print(
                f"  held back: allocation {held['allocation_id']} of {held['contributor_id']} "
                f"({held['reason']})"
            )
        if not result["issued"] and not result["already_issued"]:
            print("  nothing to settle")
        return 0
    path = (
        f"/v1/contributors/{args.contributor}/statements/{args.period}"
        if args.contributor
        else f"/v1/me/statements/{args.period}"
    )
    fmt = "csv" if args.format == "csv" else "json"
    body = call("GET", f"{path}?format={fmt}", api_key)
    if args.format == "csv":
        sys.stdout.write(body.decode())
    elif args.format == "json":
        print(json.dumps(json.loads(body), sort_keys=True))
    else:
        print(render_statement(json.loads(body)))
    return 0


def render_statement(body: dict) -> str:
    lines = [
        f"Statement for {body['contributor_name'] or body['contributor_id']}, {body['period']}"
    ]
    if not body["statements"]:
        lines.append("  no allocations and no carried balance for this period")
    for s in body["statements"]:
        cur = s["currency"]
        lines.append(f"\n  {cur} ({s['status']})")
        lines.append(
            f"    opening carried balance   {format_micros(s['opening_carried_micros'], cur):>22}"
        )
        for a in s["allocations"]:
            lines.append(
                f"    {a['period']} {a['service_id']} revenue {a['revenue_id'][:8]} contribution "
                f"{a['contribution_id'][:8]}: {a['weight']:,}/{a['total_weight']:,} of pool "
                f"{format_micros(a['pool_micros'], cur)} = "
                f"{format_micros(a['allocated_micros'], cur)}"
            )
        lines.append(
            f"    allocations               {format_micros(s['allocated_micros'], cur):>22}"
        )
        lines.append(f"    paid                      {format_minor(s['amount_minor'], cur):>22}")
        lines.append(
            f"    closing carried balance   {format_micros(s['closing_carried_micros'], cur):>22}"
        )
    lines.append(f"\n  {body['rules']}")
    return "\n".join(lines)
