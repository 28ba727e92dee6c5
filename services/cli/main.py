"""The `1tt` command: one entry point for contributors, the consumer, operators and auditors."""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import sys
from pathlib import Path

import grpc

from services.cli import export_cli, ledger_cli, payout_cli
from services.common.config import ConfigError, Settings
from services.common.topics import describe_topic_configs_on_broker

DEFAULT_INGEST_ADDRESS = "127.0.0.1:50051"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="1tt", description="The 1TT Platform: contribute text, get paid, audit the log."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = commands.add_parser("stack", help="prepare the platform's topics on the broker")
    stack.add_subparsers(dest="stack_command", required=True).add_parser(
        "prepare", help="create every registered topic, or repair its settings"
    )
    commands.add_parser("topics", help="list the registered topics and their broker settings")
    commands.add_parser("demo", help="run the end-to-end demo")

    admin = commands.add_parser("admin", help="operator tasks").add_subparsers(
        dest="admin_command", required=True
    )
    admin.add_parser("init-secrets", help="create the local stack's keys if missing")
    check = admin.add_parser("health", help="wait until a service reports SERVING")
    check.add_argument(
        "--service", choices=["ingest", "preprocess", "ledger", "payout"], default="ingest"
    )
    check.add_argument("--address", default=None)
    check.add_argument("--wait-s", type=float, default=0.0)
    rotate = admin.add_parser(
        "rotate-key", help="give a service or consumer a new signing key; retire the old one"
    )
    rotate.add_argument("--party", required=True, help="e.g. ledger, or consumer-<principal id>")
    rotate.add_argument(
        "--grace-s",
        type=float,
        default=600.0,
        help="how long the old key stays valid (restart the party within it)",
    )
    register = admin.add_parser(
        "register-keys",
        help="register the services' existing signing keys on the log (only that: for a "
        "cluster whose topics and users Strimzi makes)",
    )
    register.add_argument(
        "--party", action="append", choices=["ingest", "preprocess", "ledger", "payout"]
    )
    add = admin.add_parser("add-principal", help="register a principal and print its API key")
    add.add_argument(
        "--role", required=True, choices=["contributor", "consumer", "auditor", "operator"]
    )
    add.add_argument("--name", required=True)
    add.add_argument("--json", action="store_true")
    add.add_argument(
        "--wait-s",
        type=float,
        default=15.0,
        help="how long to wait for the ingest service to pick it up",
    )
    revoke = admin.add_parser(
        "revoke-key", help="revoke a principal's API key: every service refuses it from then on"
    )
    revoke.add_argument("--principal", metavar="PRINCIPAL_ID", help="whose key to revoke")
    revoke.add_argument("--key-prefix", metavar="tt_XXXXXXXX", help="the key's public prefix")
    revoke.add_argument("--reason", default="", help="why, in words (kept on the log)")
    revoke.add_argument("--json", action="store_true")
    revoke.add_argument(
        "--wait-s",
        type=float,
        default=15.0,
        help="how long to wait for ingest and payout to apply the revocation",
    )

    def client_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--api-key", default=None, help="default: $TT_API_KEY")
        sub.add_argument(
            "--address",
            default=None,
            help=f"ingest service (default: $TT_INGEST_ADDRESS or {DEFAULT_INGEST_ADDRESS})",
        )

    contribute = commands.add_parser("contribute", help="upload files or folders as contributions")
    contribute.add_argument("paths", nargs="+", metavar="PATH")
    contribute.add_argument("--dataset", required=True, help="the dataset these files belong to")
    contribute.add_argument(
        "--upload-id",
        help="idempotency key (single file; default: "
        "derived from the dataset and the file's name, size and mtime)",
    )
    contribute.add_argument("--format", choices=["text", "jsonl", "parquet"])
    contribute.add_argument("--compression", choices=["none", "gzip", "zstd"])
    contribute.add_argument("--json", action="store_true", help="one JSON receipt per line")
    contribute.add_argument("--progress", choices=["auto", "always", "never"], default="auto")
    contribute.add_argument(
        "--verify-first",
        action="store_true",
        help="hash each file before sending and declare the digest, so the platform "
        "refuses differing bytes before accepting anything (costs one extra read)",
    )
    client_options(contribute)

    listing = commands.add_parser("contributions", help="list your contributions")
    listing.add_argument("--json", action="store_true")
    client_options(listing)
    one = commands.add_parser("contribution", help="one contribution with its report")
    one.add_argument("contribution_id")
    client_options(one)
    status = commands.add_parser("status", help="a contribution's preprocessing report")
    status.add_argument("contribution_id")
    status.add_argument("--json", action="store_true")
    client_options(status)
    withdraw = commands.add_parser("withdraw", help="withdraw one of your contributions")
    withdraw.add_argument("contribution_id")
    withdraw.add_argument("--reason", default="")
    client_options(withdraw)

    consumer = commands.add_parser("consumer", help="the data consumer's tasks").add_subparsers(
        dest="consumer_command", required=True
    )
    reference = consumer.add_parser(
        "reference", help="register the consumer's own corpus for deduplication (fingerprints only)"
    )
    reference.add_argument("paths", nargs="+", metavar="PATH")
    ledger_cli.credentials_option(reference)
    ledger_cli.add_consumer_parsers(consumer)
    export_cli.add_export_parser(consumer)
    ledger_cli.add_ledger_parsers(commands)
    payout_cli.add_parsers(commands)

    estimate = commands.add_parser(
        "estimate", help="run the preprocessing pipeline locally on files before uploading"
    )
    estimate.add_argument("paths", nargs="+", metavar="PATH")
    estimate.add_argument("--json", action="store_true")
    estimate.add_argument("--out", metavar="DIR", help="write kept.jsonl and removed.jsonl here")

    verify = commands.add_parser("verify-receipt", help="check receipts' platform signatures")
    verify.add_argument("file", nargs="?", default="-", help="JSON receipts, one per line")
    verify.add_argument(
        "--public-key",
        help="file with the platform's base64 Ed25519 public key (default: ask the ingest service)",
    )
    verify.add_argument("--address", default=None)
    return parser


def _credentials_of(args) -> dict[str, str]:
    """Whose credentials a command uses (Settings.from_env's party arguments). A rebuild
    takes its service's place, so it acts as that service, whose role owns the schema it
    rebuilds; the audit is the auditor's, read only, unless TT_PARTY says otherwise;
    everything else is the operator's tooling (TT_PARTY, else admin)."""
    if args.command == "rebuild":
        return {"party": args.projection}
    if args.command == "audit":
        return {"default_party": "auditor"}
    return {}


async def _prepare(settings: Settings) -> int:
    from services.cli.provision import prepare

    registry = settings.topic_registry()
    result = await prepare(settings, registry)
    created = result.topics_created
    print(
        f"topics: {len(registry.specs())} registered, {len(created)} created"
        + (f" ({', '.join(created)})" if created else "")
    )
    print(
        f"kafka users and ACLs: {result.acls_added} rules granted, {result.acls_removed} "
        f"revoked; signing keys registered: {len(result.keys_registered)}"
    )
    return 0


async def _topics(settings: Settings) -> int:
    specs = settings.topic_registry().specs()
    current = await describe_topic_configs_on_broker(settings.kafka, [spec.name for spec in specs])
    for spec in specs:
        broker = current.get(spec.name, {})
        shown = " ".join(f"{k}={broker.get(k, '?')}" for k in sorted(spec.configs))
        print(f"{spec.name:<32} partitions={spec.partitions} {shown}")
    return 0


def _client(args):
    from services.cli.client import IngestClient

    address = args.address or os.environ.get("TT_INGEST_ADDRESS", DEFAULT_INGEST_ADDRESS)
    return IngestClient(address, args.api_key or os.environ.get("TT_API_KEY"))


async def _contributor(args) -> int:
    from services.cli import contribute
    from services.common.formats import compression_from_name, format_from_name
    from services.common.identity import api_key_from_authorization

    key = args.api_key or os.environ.get("TT_API_KEY")
    if not key or api_key_from_authorization(f"Bearer {key}") is None:
        raise contribute.CliError(
            "an API key is needed: set TT_API_KEY or pass --api-key (an operator creates "
            "one with '1tt admin add-principal --role contributor --name NAME')"
        )
    async with _client(args) as client:
        if args.command == "contribute":
            progress = {"auto": sys.stderr.isatty(), "always": True, "never": False}[args.progress]
            return await contribute.contribute(
                client,
                args.paths,
                args.dataset,
                upload_id=args.upload_id,
                fmt=format_from_name(args.format) if args.format else None,
                compression=compression_from_name(args.compression) if args.compression else None,
                as_json=args.json,
                progress=progress,
                verify_first=args.verify_first,
            )
        if args.command == "contributions":
            return await contribute.list_contributions(client, args.json)
        if args.command == "contribution":
            import json

            result = await client.get(args.contribution_id)
            print(json.dumps(contribute.contribution_to_json(result), indent=2))
            return 0
        if args.command == "status":
            import json

            from services.cli.report_view import render
            from services.cli.status import report_from_fact

            contribution = await client.get(args.contribution_id)
            state = contribute.STATE_NAMES[contribution.state]
            if not contribution.HasField("report"):
                print(
                    json.dumps({"contribution_id": args.contribution_id, "state": state})
                    if args.json
                    else f"{args.contribution_id}: {state}, not processed yet"
                )
                return 0
            report = (
                json.loads(contribution.report_json)
                if contribution.report_json
                else report_from_fact(contribution.report)
            )
            report.setdefault("outcome", report_from_fact(contribution.report)["outcome"])
            report.setdefault("rejection_reason", contribution.report.rejection_reason)
            if args.json:
                print(json.dumps({**report, "state": state}))
            elif report["outcome"] == "rejected":
                print(f"{args.contribution_id}: rejected: {report['rejection_reason']}")
            else:
                print(f"{args.contribution_id} ({contribution.file_name}): {state}")
                print(render(report))
            return 0
        if args.command == "withdraw":
            response = await client.withdraw(args.contribution_id, args.reason)
            print(
                f"withdrawn: {response.contribution_id}, effective "
                f"{response.effective_at.ToJsonString()} (fact {response.event_id})"
            )
            return 0
    raise AssertionError(args.command)


def _verify(args) -> int:
    from services.cli import contribute
    from services.cli.client import IngestClient

    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    if args.public_key:
        public_key = base64.b64decode(Path(args.public_key).read_text().strip())
    else:
        address = args.address or os.environ.get("TT_INGEST_ADDRESS", DEFAULT_INGEST_ADDRESS)

        async def fetch() -> bytes:
            async with IngestClient(address, None) as client:
                return (await client.receipt_key()).public_key

        public_key = asyncio.run(fetch())
    return contribute.verify_receipts(text, public_key)


async def _admin(settings: Settings, args) -> int:
    from services.cli import admin

    run_dir = Path(os.environ.get("TT_RUN_DIR", ".run"))
    if args.admin_command == "health":
        if args.service == "payout":
            base = args.address or os.environ.get("TT_PAYOUT_URL", "http://127.0.0.1:8000")
            ready, detail = await admin.wait_http_ready(f"{base}/readyz", args.wait_s)
            print(f"payout at {base}: {detail}")
            return 0 if ready else 1
        if args.service in ("preprocess", "ledger"):
            group = settings.topic_registry().consumer_group(args.service)
            ready, detail = await admin.wait_group_stable(settings.kafka, group, args.wait_s)
            print(f"{args.service}: {detail}")
            return 0 if ready else 1
        address = args.address or os.environ.get("TT_INGEST_ADDRESS", DEFAULT_INGEST_ADDRESS)
        serving, detail = await admin.wait_serving(address, args.wait_s)
        print(f"{args.service} at {address}: {detail}")
        return 0 if serving else 1
    if args.admin_command == "register-keys":
        from services.cli.provision import SERVICES, register_service_keys

        parties = tuple(args.party or SERVICES)
        done = await register_service_keys(settings, settings.topic_registry(), parties)
        print(
            f"signing keys registered: {len(done)} new ({', '.join(done) or 'all known already'})"
        )
        return 0
    if args.admin_command == "rotate-key":
        from datetime import timedelta

        from services.cli.provision import rotate_key

        done = await rotate_key(
            settings, settings.topic_registry(), args.party, timedelta(seconds=args.grace_s)
        )
        print(
            f"{done.party}: new signing key {done.new_key_id} registered and stored; the old "
            f"key {done.old_key_id} stops verifying facts appended after "
            f"{done.old_valid_until.isoformat(timespec='seconds')}: restart {done.party} "
            "before then"
        )
        return 0
    if args.admin_command == "init-secrets":
        created = admin.init_secrets(run_dir)
        print(f"secrets: {len(created)} created" + "".join(f"\n  {p}" for p in created))
        return 0
    if args.admin_command == "revoke-key":
        revoked = await admin.revoke_key(
            settings,
            principal_id=args.principal,
            key_prefix=args.key_prefix,
            reason=args.reason,
            ingest_schema=os.environ.get("TT_INGEST_SCHEMA", "ingest"),
            payout_schema=os.environ.get("TT_PAYOUT_SCHEMA", "payout"),
            wait_s=args.wait_s,
        )
        admin.print_revocation(revoked, args.json)
        return 0
    record, seen = await admin.add_principal(
        settings, args.role, args.name, os.environ.get("TT_INGEST_SCHEMA", "ingest"), args.wait_s
    )
    admin.print_principal(record, seen, args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Leader elections on brand-new topics make the producer retry, and it says so;
        # the retry is the designed behaviour, not something a user must act on.
        logging.getLogger("aiokafka").setLevel(logging.ERROR)
    from services.cli.contribute import CliError
    from services.common.formats import UploadRejected

    try:
        if args.command == "audit" and args.log is not None:
            return ledger_cli.run_file_audit(args)  # offline: no broker, no database
        settings = Settings.from_env(**_credentials_of(args))
        if args.command == "stack":
            return asyncio.run(_prepare(settings))
        if args.command == "topics":
            return asyncio.run(_topics(settings))
        if args.command == "demo":
            from services.cli import demo

            return demo.main(settings)
        if args.command == "admin":
            return asyncio.run(_admin(settings, args))
        if args.command == "verify-receipt":
            return _verify(args)
        if args.command == "consumer" and args.consumer_command == "export":
            return asyncio.run(export_cli.run_export(settings, args))
        if args.command == "consumer" and args.consumer_command != "reference":
            return asyncio.run(ledger_cli.run_consumer(settings, args))
        if args.command in ("payout", "statement"):
            return payout_cli.run(args)
        if args.command == "allocations":
            return asyncio.run(ledger_cli.run_allocations(settings, args))
        if args.command == "audit":
            return asyncio.run(ledger_cli.run_audit(settings, args))
        if args.command == "rebuild":
            return asyncio.run(ledger_cli.run_rebuild(settings, args))
        if args.command == "consumer":
            import json

            from services.cli.reference import reference

            result = asyncio.run(
                reference(
                    ledger_cli.consumer_settings(settings, args.credentials),
                    args.paths,
                    Path(os.environ.get("TT_RUN_DIR", ".run")),
                )
            )
            print(
                json.dumps(result)
                if args.json
                else f"reference {result['reference_id']}: {result['documents']} documents "
                "fingerprinted (only the fingerprints are kept)"
            )
            return 0
        if args.command == "estimate":
            from services.cli.estimate import estimate

            return estimate(args.paths, args.json, args.out)
        return asyncio.run(_contributor(args))
    except (
        ConfigError,
        CliError,
        UploadRejected,
        ValueError,
        OSError,
        PermissionError,
        RuntimeError,
    ) as error:
        print(f"1tt: {error}", file=sys.stderr)
        return 1 if not isinstance(error, ConfigError) else 2
    except grpc.RpcError as error:
        print(f"1tt: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
