"""The `1tt` command: one entry point for contributors, the consumer, operators and auditors.
At this stage it manages the local stack's topics and runs the demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from services.common.config import ConfigError, Settings
from services.common.topics import describe_topic_configs_on_broker, ensure_topics_on_broker


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
    commands.add_parser("demo", help="push one fact of every type through Kafka into Postgres")
    return parser


async def _prepare(settings: Settings) -> int:
    specs = settings.topic_registry().specs()
    created = await ensure_topics_on_broker(settings.kafka_bootstrap, specs)
    print(
        f"topics: {len(specs)} registered, {len(created)} created"
        + (f" ({', '.join(created)})" if created else "")
    )
    return 0


async def _topics(settings: Settings) -> int:
    specs = settings.topic_registry().specs()
    current = await describe_topic_configs_on_broker(
        settings.kafka_bootstrap, [spec.name for spec in specs]
    )
    for spec in specs:
        broker = current.get(spec.name, {})
        shown = " ".join(f"{k}={broker.get(k, '?')}" for k in sorted(spec.configs))
        print(f"{spec.name:<32} partitions={spec.partitions} {shown}")
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
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"1tt: {error}", file=sys.stderr)
        return 2
    if args.command == "stack":
        return asyncio.run(_prepare(settings))
    if args.command == "topics":
        return asyncio.run(_topics(settings))
    if args.command == "demo":
        from services.cli import demo

        return demo.main(settings)
    raise AssertionError(f"unhandled command {args.command}")


if __name__ == "__main__":
    sys.exit(main())
