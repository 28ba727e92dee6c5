"""The consumer's verbs (`1tt consumer agreement|snapshot|deploy|revenue|adjust`), the
ledger views (`1tt allocations`) and `1tt rebuild ledger`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from services.common.config import Settings
from services.common.money import format_micros, format_minor


def _key_option(parser: argparse.ArgumentParser, role: str) -> None:
    parser.add_argument("--api-key", default=None, help=f"a {role}'s key (default: $TT_API_KEY)")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def credentials_option(parser: argparse.ArgumentParser) -> None:
    """The consumer's verbs act with the consumer's own credentials, not an API key."""
    parser.add_argument(
        "--credentials",
        default=None,
        metavar="FOLDER",
        help="the consumer's credentials folder, as '1tt admin add-principal --role "
        "consumer' printed it (default: $TT_CREDENTIALS_DIR/$TT_PARTY)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for machines")


def consumer_settings(settings: Settings, folder: str | None) -> Settings:
    """`settings` acting as the consumer whose credentials are in `folder` (if given)."""
    if not folder:
        return settings
    path = Path(folder).resolve()
    return dataclasses.replace(settings.for_party(path.name), credentials_dir=path.parent)


def add_consumer_parsers(consumer) -> None:
    agreement = consumer.add_parser("agreement", help="publish a revenue-sharing agreement")
    agreement.add_argument("--service", required=True)
    agreement.add_argument(
        "--share-bps", type=int, required=True, help="contributors' share, basis points"
    )
    agreement.add_argument("--from", dest="effective_from", required=True, metavar="DATE")
    agreement.add_argument("--until", dest="effective_until", metavar="DATE")
    agreement.add_argument("--currency", required=True)
    agreement.add_argument("--min-payout-minor", type=int, default=0)
    agreement.add_argument("--id", dest="agreement_id", help="default: derived from the terms")
    credentials_option(agreement)

    snapshot = consumer.add_parser("snapshot", help="record the contributions a dataset took")
    snapshot.add_argument("--name", required=True)
    snapshot.add_argument("--all-processed", action="store_true")
    snapshot.add_argument(
        "--contribution", action="append", default=[], dest="contributions", metavar="ID"
    )
    snapshot.add_argument("--as-of", metavar="TIME", help="default: now")
    credentials_option(snapshot)

    deploy = consumer.add_parser("deploy", help="record that a service runs on snapshots")
    deploy.add_argument("--service", required=True)
    deploy.add_argument(
        "--snapshot", action="append", required=True, dest="snapshots", metavar="SNAPSHOT_ID"
    )
    deploy.add_argument("--from", dest="deployed_from", required=True, metavar="DATE")
    deploy.add_argument("--id", dest="deployment_id")
    credentials_option(deploy)

    revenue = consumer.add_parser("revenue", help="record revenue a service earned")
    revenue.add_argument("--service", required=True)
    revenue.add_argument("--period", required=True, metavar="YYYY-MM")
    revenue.add_argument("--amount-minor", type=int, required=True)
    revenue.add_argument("--currency", required=True)
    revenue.add_argument("--id", dest="external_id", required=True, help="your own id (invoice)")
    revenue.add_argument(
        "--agreement",
        help="the agreement you expect (default: the one in force; any other is refused)",
    )
    revenue.add_argument(
        "--deployment",
        action="append",
        default=[],
        dest="deployments",
        help="the deployments you expect (default: those live in the period; others are refused)",
    )
    credentials_option(revenue)

    adjust = consumer.add_parser("adjust", help="correct recorded revenue (signed delta)")
    adjust.add_argument("--revenue", required=True, metavar="EXTERNAL_ID")
    adjust.add_argument("--delta-minor", type=int, required=True)
    adjust.add_argument("--reason", required=True)
    adjust.add_argument("--id", dest="adjustment_id", required=True)
    credentials_option(adjust)


def add_ledger_parsers(commands) -> None:
    allocations = commands.add_parser(
        "allocations", help="allocations of revenue to contributions (your view)"
    )
    allocations.add_argument("--revenue-id", help="one revenue event: your id or the platform's")
    _key_option(allocations, "principal")
    audit = commands.add_parser(
        "audit", help="replay the log, recompute allocations and payouts, compare"
    )
    _key_option(audit, "auditor")
    audit.add_argument(
        "--facts-only", action="store_true", help="compare with the facts only, not PostgreSQL"
    )
    audit.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help="audit a log kept in a file (e.g. tests/conformance/kit/log.jsonl, "
        "docs/conformance.md) instead of the broker: facts only, no database, no key",
    )
    audit.add_argument(
        "--anchors",
        type=Path,
        metavar="FILE",
        help="the trust anchors for --log (default: anchors.json beside the log)",
    )
    rebuild = commands.add_parser("rebuild", help="drop a projection and replay the log")
    rebuild.add_argument("projection", choices=["ledger", "payout"])
    rebuild.add_argument("--json", action="store_true")


async def run_consumer(settings: Settings, args) -> int:
    from services.consumer.client import ConsumerClient

    async with await ConsumerClient.connect(
        consumer_settings(settings, args.credentials)
    ) as client:
        command = args.consumer_command
        if command == "agreement":
            published = await client.publish_agreement(
                service=args.service,
                share_bps=args.share_bps,
                effective_from=args.effective_from,
                effective_until=args.effective_until,
                currency=args.currency,
                min_payout_minor=args.min_payout_minor,
                agreement_id=args.agreement_id,
            )
        elif command == "snapshot":
            published = await client.create_snapshot(
                name=args.name,
                all_processed=args.all_processed,
                contribution_ids=args.contributions,
                as_of=args.as_of,
            )
        elif command == "deploy":
            published = await client.deploy(
                service=args.service,
                snapshot_ids=args.snapshots,
                deployed_from=args.deployed_from,
                deployment_id=args.deployment_id,
            )
        elif command == "revenue":
            published = await client.record_revenue(
                service=args.service,
                period=args.period,
                amount_minor=args.amount_minor,
                currency=args.currency,
                external_id=args.external_id,
                agreement_id=args.agreement,
                deployment_ids=args.deployments,
            )
        else:
            published = await client.adjust_revenue(
                external_id=args.revenue,
                adjustment_id=args.adjustment_id,
                delta_minor=args.delta_minor,
                reason=args.reason,
            )
    if args.json:
        print(json.dumps(published.as_json(), sort_keys=True))
        return 0
    verb = "already on the log" if published.replayed else "published"
    summary = published.as_json()
    id_name = next(k for k in summary if k.endswith("_id") and k != "event_id")
    print(f"{published.event_type} {verb}: {id_name} {published.fact_id}")
    fact = published.fact
    if published.event_type == "snapshot.created":
        tokens = sum(int(m["tokens_accepted"]) for m in fact["members"])
        print(
            f"  {len(fact['members'])} contributions, {tokens:,} accepted tokens, "
            f"merkle root {fact['merkle_root']}"
        )
    for note in published.notes:
        print(f"  {note}")
    return 0


async def run_allocations(settings: Settings, args) -> int:
    from services.common.db import connect
    from services.common.principals import principal_for_key
    from services.ledger.queries import allocations_view

    principal = await principal_for_key(
        settings.database_url,
        args.api_key or os.environ.get("TT_API_KEY"),
        ["contributor", "consumer", "operator", "auditor"],
        "viewing allocations",
    )
    schema = os.environ.get("TT_LEDGER_SCHEMA", "ledger")
    conn = await connect(settings.database_url, schema, application_name="1tt")
    try:
        view = await allocations_view(conn, principal, args.revenue_id)
    finally:
        await conn.close()
    if args.json:
        print(json.dumps(view, sort_keys=True))
        return 0
    for revenue in view.get("revenue", []):
        amount = format_minor(revenue["amount_minor"], revenue["currency"])
        line = (
            f"{revenue['kind']:8} {revenue['external_id'] or revenue['revenue_id']:>14} "
            f"{revenue['service_id']} {revenue['period']} {amount}: {revenue['status']}"
        )
        if revenue["status"] == "allocated":
            line += (
                f", pool {format_micros(revenue['pool_micros'], revenue['currency'])} over "
                f"{revenue['contributions']} contributions"
            )
        elif revenue["status_reason"]:
            line += f" ({revenue['status_reason']})"
        print(line)
    for a in view.get("allocations", []):
        print(
            f"{a['period']} {a['service_id']} {a['external_id'] or a['revenue_id']}: "
            f"contribution {a['contribution_id']} "
            f"{format_micros(a['allocated_micros'], a['currency'])} "
            f"(weight {a['weight']:,} of {a['total_weight']:,}, pool "
            f"{format_micros(a['pool_micros'], a['currency'])})"
        )
    for currency, total in sorted(view.get("total_micros_by_currency", {}).items()):
        print(f"total: {format_micros(total, currency)}")
    if not view.get("revenue") and not view.get("allocations"):
        print("no allocations yet", file=sys.stderr)
    return 0


async def run_rebuild(settings: Settings, args) -> int:
    if args.projection == "ledger":
        from services.ledger.rebuild import rebuild_ledger

        result = await rebuild_ledger(settings, os.environ.get("TT_LEDGER_SCHEMA", "ledger"))
    else:
        from services.payout.rebuild import rebuild_payout

        result = await rebuild_payout(settings, os.environ.get("TT_PAYOUT_SCHEMA", "payout"))
    if args.json:
        print(json.dumps(result.as_json(), sort_keys=True))
    else:
        print(
            f"replayed {result.facts_replayed} facts "
            f"({result.facts_rejected} rejected as before, {result.invalid_records} invalid)"
        )
        for table, count in result.counts_after.items():
            print(f"  {table}: {count} rows")
        print(f"digest before: {result.digest_before or '(no projection)'}")
        print(f"digest after:  {result.digest_after}")
        print("identical" if result.identical else "DIFFERENT")
    return 0 if result.identical or result.digest_before is None else 1


async def run_audit(settings: Settings, args) -> int:
    from services.audit.audit import run_audit as audit
    from services.common.principals import principal_for_key

    await principal_for_key(
        settings.database_url,
        args.api_key or os.environ.get("TT_API_KEY"),
        ["auditor", "operator"],
        "the audit",
    )
    # The audit acts as the auditor unless TT_PARTY says otherwise (services.cli.main).
    report = await audit(
        settings,
        os.environ.get("TT_LEDGER_SCHEMA", "ledger"),
        os.environ.get("TT_PAYOUT_SCHEMA", "payout"),
        check_projections=not args.facts_only,
    )
    return print_audit(report, args.json)


def run_file_audit(args) -> int:
    """`1tt audit --log FILE`: the same audit of a log kept in a file, offline."""
    from services.audit.audit import audit_log_file
    from services.common.logreader import LogFileError
    from services.common.signing import load_anchors

    anchors_path = args.anchors or args.log.parent / "anchors.json"
    try:
        report, _ = audit_log_file(args.log, load_anchors(anchors_path))
    except (OSError, LogFileError, ValueError, KeyError) as error:
        print(f"error: cannot audit {args.log}: {error}", file=sys.stderr)
        return 2
    report.notes.append(f"log read from {args.log}; trust anchors from {anchors_path}")
    return print_audit(report, args.json)


def print_audit(report, as_json: bool) -> int:
    if as_json:
        print(json.dumps(report.as_json(), sort_keys=True))
        return 0 if report.matched else 1
    print("facts on the log (distinct event ids):")
    for event_type, count in report.fact_counts.items():
        print(f"  {event_type:<24} {count:>8}")
    if report.duplicate_records or report.invalid_records:
        print(
            f"  ({report.duplicate_records} resent records ignored, "
            f"{report.invalid_records} invalid records)"
        )
    print("signed by (every fact's signature verified):")
    for speaker, counts in sorted(report.signed_by.items()):
        listed = ", ".join(f"{event_type} {n}" for event_type, n in sorted(counts.items()))
        print(f"  {speaker:<48} {sum(counts.values()):>8}  ({listed})")
    if report.untrusted_records:
        print(
            f"  {report.untrusted_records} record(s) not trusted (dead-lettered by every "
            "reader; they changed nothing):"
        )
        for line in report.untrusted:
            print(f"    - {line}")
    if report.misplaced_records:
        print(
            f"  {report.misplaced_records} record(s) on another type's topic (skipped, as "
            "every reader skips them):"
        )
        for line in report.misplaced:
            print(f"    - {line}")
    print(f"signing keys: {len(report.keys)} registered, {len(report.refused_keys)} refused")
    for line in report.refused_keys:
        print(f"  refused: {line}")
    print(f"principals: {len(report.principals)}")
    for principal in report.principals:
        print(
            f"  {principal['role']:<12} {principal['name']!r} {principal['principal_id']} "
            f"(key {principal['api_key_prefix']}, registered by {principal['registered_by']}"
            + (f"; revoked {principal['revoked']})" if principal["revoked"] else ")")
        )
    outcomes = ", ".join(f"{n} {status}" for status, n in sorted(report.outcomes.items()))
    print(f"revenue events: {outcomes or 'none'}")
    for currency, t in sorted(report.totals.items()):
        print(
            f"{currency}: revenue {format_minor(t['revenue_minor'], currency)}, pool "
            f"{format_micros(t['pool_micros'], currency)}, allocated "
            f"{format_micros(t['allocated_micros'], currency)}, paid "
            f"{format_minor(t['paid_minor'], currency)}, carried "
            f"{format_micros(t['carried_micros'], currency)}, not yet settled "
            f"{format_micros(t['unsettled_micros'], currency)}"
        )
    print(f"allocations: {report.allocations}, payouts: {report.payouts}")
    print(f"allocations digest: {report.digest}")
    for note in report.notes:
        print(f"note: {note}")
    if report.matched:
        print("audit: MATCH (the facts, the rules and the projections agree)")
        return 0
    print(f"audit: MISMATCH ({len(report.mismatches)} difference(s)):")
    for line in report.mismatches:
        print(f"  - {line}")
    return 1
