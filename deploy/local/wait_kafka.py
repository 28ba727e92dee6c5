#!/usr/bin/env python3
"""Wait until a Kafka broker answers a metadata request (used by deploy/local/stack.sh).

Usage:
    python deploy/local/wait_kafka.py [--bootstrap HOST:PORT] [--timeout SECONDS] [--smoke]
        [--username NAME --password-file FILE] [--cafile CA.crt]

With --username the client authenticates with SASL/SCRAM-SHA-512, over TLS when --cafile
names the CA that signed the broker's certificate (the local stack's broker requires both).

Exit status: 0 when the broker answered (and, with --smoke, the round trip worked),
1 with a message on stderr otherwise, 2 if aiokafka is not importable.

--smoke additionally proves the broker works for this client the way the project
uses it: create a throwaway topic, produce one message with an idempotent
producer (enable_idempotence=True, acks='all'), consume it back with
isolation_level='read_committed', then delete the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid

PREFIX = "[wait_kafka]"


def _say(msg: str) -> None:
    print(f"{PREFIX} {msg}", file=sys.stderr, flush=True)


try:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
except ImportError as exc:  # pragma: no cover - environment problem
    _say(
        f"cannot import aiokafka with {sys.executable}: {exc}. "
        "Install the project's dependencies (or set PYTHON to an interpreter that has aiokafka)."
    )
    sys.exit(2)


def _error_codes(response: object, key: str) -> list[tuple[str, int, str | None]]:
    """Extract (topic, error_code, error_message) from a create/delete topics response."""
    obj = response.to_object()  # type: ignore[attr-defined]
    out = []
    for item in obj.get(key, []):
        name = item.get("topic") or item.get("name") or "?"
        out.append((name, int(item.get("error_code", 0)), item.get("error_message")))
    return out


# Set by main(): SASL and TLS options for every client.
SECURITY: dict = {}


def _security(args: argparse.Namespace) -> dict:
    options: dict = {}
    if args.cafile:
        import ssl

        options["ssl_context"] = ssl.create_default_context(cafile=args.cafile)
    if args.username:
        with open(args.password_file, encoding="utf-8") as handle:
            password = handle.read().strip()
        options.update(
            security_protocol="SASL_SSL" if args.cafile else "SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=args.username,
            sasl_plain_password=password,
        )
    elif args.cafile:
        options["security_protocol"] = "SSL"
    return options


async def _metadata_once(bootstrap: str, request_timeout_ms: int) -> dict:
    admin = AIOKafkaAdminClient(
        **SECURITY,
        bootstrap_servers=bootstrap,
        request_timeout_ms=request_timeout_ms,
        client_id="tt-wait-kafka",
    )
    try:
        await admin.start()
        cluster = await admin.describe_cluster()
        if not cluster.get("brokers"):
            raise RuntimeError("metadata response lists no brokers yet")
        return cluster
    finally:
        await admin.close()


async def wait_for_metadata(bootstrap: str, limit_s: float) -> dict:
    deadline = time.monotonic() + limit_s
    attempt = 0
    last_error: BaseException | None = None
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"Kafka at {bootstrap} did not answer a metadata request within {limit_s:.0f}s "
                f"({attempt - 1} attempts; last error: {last_error!r})"
            )
        per_try = max(1.0, min(10.0, remaining))
        try:
            return await asyncio.wait_for(
                _metadata_once(bootstrap, int(per_try * 1000)), timeout=per_try + 1
            )
        except Exception as exc:  # any failure means "not ready yet"
            last_error = exc
        await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))


async def smoke(bootstrap: str, limit_s: float) -> None:
    topic = f"tt-smoke-{uuid.uuid4().hex[:12]}"
    payload = f"smoke {uuid.uuid4()}".encode()
    admin = AIOKafkaAdminClient(
        **SECURITY, bootstrap_servers=bootstrap, client_id="tt-wait-kafka-smoke"
    )
    await admin.start()
    try:
        resp = await admin.create_topics(
            [NewTopic(name=topic, num_partitions=1, replication_factor=1)], timeout_ms=15000
        )
        errors = [e for e in _error_codes(resp, "topic_errors") if e[1] != 0]
        if errors:
            raise RuntimeError(f"create_topics({topic}) failed: {errors}")
        _say(f"smoke: created topic {topic}")

        producer = AIOKafkaProducer(
            **SECURITY,
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            client_id="tt-wait-kafka-smoke",
        )
        await producer.start()
        try:
            # The new topic's leader may take a moment to appear in metadata.
            md = await asyncio.wait_for(producer.send_and_wait(topic, payload, key=b"k"), limit_s)
            _say(f"smoke: produced idempotently to {md.topic}[{md.partition}]@{md.offset}")
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            **SECURITY,
            bootstrap_servers=bootstrap,
            group_id=f"{topic}-group",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
            client_id="tt-wait-kafka-smoke",
        )
        await consumer.start()
        try:
            deadline = time.monotonic() + limit_s
            got = None
            while got is None and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for rec in records:
                        if rec.value == payload:
                            got = rec
            if got is None:
                raise RuntimeError(
                    "read_committed consumer did not receive the message from "
                    f"{topic} within {limit_s:.0f}s"
                )
            await consumer.commit()
            where = f"{got.topic}[{got.partition}]@{got.offset}"
            _say(f"smoke: consumed it back (read_committed) from {where}")
        finally:
            await consumer.stop()
    finally:
        try:
            resp = await admin.delete_topics([topic], timeout_ms=15000)
            errors = [e for e in _error_codes(resp, "topic_error_codes") if e[1] != 0]
            if errors:
                _say(f"smoke: WARNING: delete_topics({topic}) reported {errors}")
            else:
                _say(f"smoke: deleted topic {topic}")
        finally:
            await admin.close()


async def main_async(args: argparse.Namespace) -> int:
    start = time.monotonic()
    try:
        cluster = await wait_for_metadata(args.bootstrap, args.timeout)
    except TimeoutError as exc:
        _say(f"FAILED: {exc}")
        return 1
    brokers = ", ".join(
        f"{b.get('node_id')}@{b.get('host')}:{b.get('port')}" for b in cluster.get("brokers", [])
    )
    _say(
        f"Kafka at {args.bootstrap} answered metadata after {time.monotonic() - start:.1f}s "
        f"(cluster_id={cluster.get('cluster_id')}, brokers={brokers})"
    )
    if args.smoke:
        remaining = max(15.0, args.timeout - (time.monotonic() - start))
        try:
            await asyncio.wait_for(smoke(args.bootstrap, remaining), timeout=remaining + 30)
        except Exception as exc:
            _say(f"FAILED: smoke test against {args.bootstrap}: {exc!r}")
            return 1
        _say("smoke test passed (idempotent produce + read_committed consume)")
    return 0


def main() -> int:
    default_bootstrap = os.environ.get("TT_KAFKA_BOOTSTRAP") or "{}:{}".format(
        os.environ.get("TT_KAFKA_HOST", "127.0.0.1"), os.environ.get("TT_KAFKA_PORT", "9092")
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bootstrap", default=default_bootstrap, help=f"default: {default_bootstrap}"
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds (default 90)")
    parser.add_argument("--smoke", action="store_true", help="also do a produce/consume round trip")
    parser.add_argument("-v", "--verbose", action="store_true", help="show aiokafka's own logging")
    parser.add_argument("--username", help="SASL/SCRAM-SHA-512 user")
    parser.add_argument("--password-file", help="file holding that user's password")
    parser.add_argument("--cafile", help="CA certificate of the broker (TLS)")
    args = parser.parse_args()
    if args.username and not args.password_file:
        parser.error("--username needs --password-file")
    SECURITY.update(_security(args))
    # aiokafka logs every refused connection at ERROR while the broker is starting: keep it quiet.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
