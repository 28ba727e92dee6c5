"""A deterministic workload for fault tests, built from a seed, and its steps on a platform.

`build_workload(seed)` decides everything from the seed: 3-4 contributors, a consumer
and an operator registered with ids and API keys derived from the seed (so contribution
ids, and with them the largest-remainder tie-breaks, are the same in every run of the
seed); 8-12 small uploads (JSONL or plain text) in which some documents are exact or
near copies of documents another contributor uploaded earlier; two agreements (USD and
EUR), two snapshots of everything processed, two deployments, four revenue events and
an adjustment, and payout runs for two months.

`WorkloadRun(workload, platform, awkward=...)` turns it into named steps. Every step is
idempotent (upload ids, derived fact ids, payout runs keyed by period) and retried while
the broker, the database or a service is away. Uploads go one at a time, each waiting
until preprocessing has published its outcome: "earlier" in deduplication is the log
order, so this is what makes the accepted tokens the same in every run. With
`awkward=True` the code deployment and the EUR revenue are published right after the
agreements, the deployment naming snapshot s2 (by its derived id) long before that snapshot
and the uploads in it exist: the ledger must park the revenue, then release it. Otherwise
both come after snapshot s2.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import httpx
from aiokafka import AIOKafkaProducer

from services.cli.client import IngestClient, UploadSpec
from services.cli.provision import owner_signers
from services.common.bus import FactProducer, PartyBus
from services.common.facts import make_envelope, payload_of, timestamp
from services.common.identity import Principal, api_key_sha256, role_number
from services.common.keys import KeyFeed
from services.common.logreader import read_log
from services.consumer.client import ConsumerClient
from services.rules.ids import derived_id
from tests.faults.platform import Platform, PlatformFailure
from tests.integration.conftest import publish_signed
from tt.facts.v1 import consumer_pb2, contribution_pb2, identity_pb2

PRODUCER = "fault-suite"
FIRST_PERIOD = "2026-09"
SECOND_PERIOD = "2026-10"
PERIODS = (FIRST_PERIOD, SECOND_PERIOD)
CONTRIBUTOR_NAMES = ("Northwind Press", "Lexicon Legal", "Harbor Archives", "Meridian Books")
# gRPC codes worth retrying an upload on: the upload id makes a retry safe. A service
# killed in the middle of a stream can also end it with CANCELLED, UNKNOWN or INTERNAL.
RETRY_UPLOAD_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
}

WORDS = """
account address advice afternoon agreement allowance anchor answer archive argument
article autumn balance bargain basket beacon bench bicycle blanket border bottle branch
breakfast bridge budget builder cabinet calendar candle canvas captain carpet castle
ceiling century chapter charter chimney circle citizen climate cloud coast collar colony
comfort compass concert copper corner cottage council counter courage courtyard cousin
crystal current curtain custom dancer danger daylight debate decade delivery desert
detail diamond dinner distance doctor document domain drawer dream driver eagle editor
effort elbow engine evening evidence factory family farmer feather fellow festival
fiction figure finger forest fortune fountain freedom friend garden gather glacier
harbor harvest helmet history holiday honey horizon hunter island journey judge kettle
kitchen ladder lantern lawyer leather letter library lighthouse liquid listener lumber
machine magnet manner market meadow measure memory merchant message method midnight
minister mirror moment monster morning mountain museum narrator nation needle network
notebook number ocean office orchard orange painter palace paper parcel passage pattern
pencil pepper person picture pilgrim planet pocket poem portrait powder prairie present
printer promise quarter question rabbit railway reader record region remedy report
ribbon river rocket saddle sailor scholar season secret servant shadow shelter signal
silver singer sister sketch soldier sound speaker spirit spring square station statue
stone story stranger stream student summer supper surface swallow table teacher temple
theory thunder ticket timber tower traveller treasure tunnel uncle valley velvet village
visitor voyage wagon walker wander warden weather whistle widow window winter witness
wonder worker writer yellow young zephyr carries opens finds keeps holds watches gives
remembers follows builds crosses answers brings leaves reaches writes reads sings paints
quiet bright ancient narrow gentle golden hidden early careful distant simple heavy
""".split()
LINKS = "the a their every our this that its".split()


def _sentence(rng: random.Random) -> str:
    words = []
    for position in range(rng.randint(7, 14)):
        if position % 3 == 0:
            words.append(rng.choice(LINKS))
        words.append(rng.choice(WORDS))
    return " ".join(words).capitalize() + "."


def make_document(rng: random.Random) -> str:
    """A few paragraphs of plausible prose: passes every quality rule, matches no other."""
    paragraphs = [
        " ".join(_sentence(rng) for _ in range(rng.randint(3, 6))) for _ in range(rng.randint(2, 3))
    ]
    return "\n\n".join(paragraphs)


def near_copy(text: str, rng: random.Random) -> str:
    """The same text with two words changed: a near duplicate (Jaccard well above 0.8)."""
    words = text.split(" ")
    for _ in range(2):
        words[rng.randrange(len(words))] = rng.choice(WORDS)
    return " ".join(words)


@dataclass(frozen=True)
class PrincipalSpec:
    name: str
    role: str
    principal_id: str
    api_key: str

    def fact(self) -> identity_pb2.PrincipalRegistered:
        return identity_pb2.PrincipalRegistered(
            principal_id=self.principal_id,
            role=role_number(self.role),
            name=self.name,
            api_key_sha256=api_key_sha256(self.api_key),
            api_key_prefix=self.api_key[:11],
        )


@dataclass(frozen=True)
class UploadItem:
    index: int
    contributor: str  # a contributor's name
    file_name: str
    data: bytes
    documents: int
    copies: int  # documents that copy (exactly or nearly) an earlier contributor's

    @property
    def upload_id(self) -> str:
        return f"faults-upload-{self.index:02d}"


@dataclass(frozen=True)
class RevenueItem:
    key: str  # R1..R4
    service: str
    period: str
    amount_minor: int
    currency: str

    def external_id(self, seed: int) -> str:
        return f"INV-{seed}-{self.key}"


@dataclass(frozen=True)
class Workload:
    seed: int
    principals: dict[str, PrincipalSpec]  # by name
    contributors: tuple[str, ...]
    uploads: tuple[UploadItem, ...]
    first_snapshot_after: int  # uploads processed before snapshot s1
    chat_share_bps: int
    chat_min_payout_minor: int
    code_share_bps: int
    code_min_payout_minor: int
    revenues: dict[str, RevenueItem]
    adjustment_delta_minor: int

    @property
    def consumer(self) -> PrincipalSpec:
        return self.principals["Acme AI"]

    @property
    def operator(self) -> PrincipalSpec:
        return self.principals["Olga Operator"]

    def contribution_id(self, upload: UploadItem) -> str:
        return derived_id(
            "contribution", self.principals[upload.contributor].principal_id, upload.upload_id
        )

    def revenue_id(self, key: str) -> str:
        external = self.revenues[key].external_id(self.seed)
        return derived_id("revenue.recorded", self.consumer.principal_id, external)

    @property
    def adjustment_external_id(self) -> str:
        return f"ADJ-{self.seed}-R1"

    @property
    def adjustment_id(self) -> str:
        return derived_id(
            "revenue.adjusted", self.consumer.principal_id, self.adjustment_external_id
        )

    @property
    def code_deployment_id(self) -> str:
        return derived_id("faults.deployment", str(self.seed), "code")

    def describe(self) -> str:
        copies = sum(u.copies for u in self.uploads)
        return (
            f"{len(self.contributors)} contributors, {len(self.uploads)} uploads "
            f"({sum(u.documents for u in self.uploads)} documents, {copies} copies), "
            f"2 agreements, 2 snapshots, 2 deployments, {len(self.revenues)} revenue events, "
            "1 adjustment, 2 payout runs"
        )


def _api_key(rng: random.Random) -> str:
    """A well-formed key (tt_<8 hex>_<43 url-safe>), from the seed rather than the OS."""
    secret = base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("=")
    return f"tt_{rng.randbytes(4).hex()}_{secret}"


def build_workload(seed: int) -> Workload:
    """Everything the workload does, decided by `seed` alone."""
    rng = random.Random(f"workload-{seed}")
    contributors = CONTRIBUTOR_NAMES[: rng.choice((3, 4))]
    principals = {
        name: PrincipalSpec(
            name, role, derived_id("faults.principal", str(seed), name), _api_key(rng)
        )
        for name, role in [
            *((name, "contributor") for name in contributors),
            ("Acme AI", "consumer"),
            ("Olga Operator", "operator"),
        ]
    }
    uploads: list[UploadItem] = []
    earlier: list[tuple[str, str]] = []  # (contributor, document) uploaded so far
    for index in range(rng.randint(8, 12)):
        # Every contributor uploads at least once; then at random.
        contributor = contributors[index] if index < len(contributors) else rng.choice(contributors)
        as_text = rng.random() < 0.3
        documents, copies = [], 0
        for _ in range(1 if as_text else rng.randint(2, 5)):
            others = [doc for who, doc in earlier if who != contributor]
            roll = rng.random()
            if others and roll < 0.2:
                documents.append(rng.choice(others))
                copies += 1
            elif others and roll < 0.3:
                documents.append(near_copy(rng.choice(others), rng))
                copies += 1
            else:
                documents.append(make_document(rng))
        earlier += [(contributor, doc) for doc in documents]
        if as_text:
            data, file_name = documents[0].encode(), f"upload-{index:02d}.txt"
        else:
            lines = [
                json.dumps({"id": f"doc-{index}-{n}", "text": doc})
                for n, doc in enumerate(documents)
            ]
            data, file_name = ("\n".join(lines) + "\n").encode(), f"upload-{index:02d}.jsonl"
        uploads.append(UploadItem(index, contributor, file_name, data, len(documents), copies))
    revenues = {
        "R1": RevenueItem("R1", "chat", FIRST_PERIOD, rng.randint(20_000, 300_000), "USD"),
        "R2": RevenueItem("R2", "chat", SECOND_PERIOD, rng.randint(20_000, 300_000), "USD"),
        "R3": RevenueItem("R3", "code", SECOND_PERIOD, rng.randint(5_000, 200_000), "EUR"),
        "R4": RevenueItem("R4", "code", FIRST_PERIOD, rng.randint(5_000, 200_000), "EUR"),
    }
    return Workload(
        seed=seed,
        principals=principals,
        contributors=tuple(contributors),
        uploads=tuple(uploads),
        first_snapshot_after=rng.randint(len(uploads) // 3, len(uploads) // 2),
        chat_share_bps=rng.randint(1000, 3000),
        chat_min_payout_minor=rng.choice((0, 500, 2000)),
        code_share_bps=rng.randint(500, 2500),
        code_min_payout_minor=rng.choice((0, 1000, 5000)),
        revenues=revenues,
        adjustment_delta_minor=-rng.randint(1, revenues["R1"].amount_minor // 4),
    )


@dataclass
class Step:
    name: str
    run: Callable[[], Awaitable[None]]


@dataclass
class WorkloadRun:
    """The workload's steps on one platform, and what they published. (`steps()` only
    names the steps; a plan can be made from it before any platform exists.)"""

    workload: Workload
    platform: Platform | None
    awkward: bool
    ids: dict[str, str] = field(default_factory=dict)  # snapshot/agreement ids by name
    published_revenue: list[str] = field(default_factory=list)  # revenue/adjustment ids
    payout_runs: dict[str, dict] = field(default_factory=dict)  # period -> first answer
    notes: list[str] = field(default_factory=list)  # anomalies seen on the way
    parked_reason: str = ""  # why the ledger parked the revenue published too early

    @property
    def settings(self):
        return self.platform.settings

    # -- the plan ------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        w = self.workload
        uploads = [
            Step(f"upload {u.index} ({u.contributor})", self._upload_step(u)) for u in w.uploads
        ]
        early, late = uploads[: w.first_snapshot_after], uploads[w.first_snapshot_after :]
        eur_revenue = Step("revenue R3 (code, EUR)", lambda: self.revenue("R3"))
        code_deployment = Step("deploy code on s1+s2", self.deploy_code)
        # The awkward order: the deployment and its revenue long before the snapshot the
        # deployment names (and the uploads in it).
        if self.awkward:
            ahead = Step("deploy code on s1+s2 ahead of s2", self.deploy_code_ahead)
            awkward, natural = [ahead, eur_revenue], []
        else:
            awkward, natural = [], [code_deployment, eur_revenue]
        return [
            Step("register principals", self.register_principals),
            *early,
            Step("snapshot s1", lambda: self.snapshot("s1")),
            Step("agreements", self.agreements),
            *awkward,
            Step("deploy chat on s1", self.deploy_chat),
            Step("revenue R1 (chat, USD)", lambda: self.revenue("R1")),
            *late,
            Step("snapshot s2", lambda: self.snapshot("s2")),
            *natural,
            Step("revenue R2 (chat, USD)", lambda: self.revenue("R2")),
            Step(f"payout run {FIRST_PERIOD}", lambda: self.payout_run(FIRST_PERIOD)),
            Step("adjustment of R1", self.adjust),
            Step("revenue R4 (code, EUR, late)", lambda: self.revenue("R4")),
            Step(f"payout run {SECOND_PERIOD}", lambda: self.payout_run(SECOND_PERIOD)),
        ]

    # -- steps ---------------------------------------------------------------------------

    async def retry(self, action: Callable[[], Awaitable], what: str, timeout_s: float = 240):
        """Run `action` until it succeeds; errors of an absent broker, database or service
        are retried (every action here is idempotent), anything else is raised."""
        outcome: list = []

        async def attempt():
            outcome.append(await action())
            return True

        await self.platform.wait_for(attempt, what, timeout_s=timeout_s, interval_s=1.0)
        return outcome[-1]

    async def publish(self, envelopes) -> None:
        async def send():
            await publish_signed(self.settings, self.settings.topic_registry(), *envelopes)

        await self.retry(send, f"publishing {len(envelopes)} fact(s)")

    async def publish_raw(self, records) -> None:
        """Send (topic, key, value) records as they are, with the operator's access."""
        async with AIOKafkaProducer(**self.settings.kafka.client_options()) as producer:
            for topic, key, value in records:
                await producer.send_and_wait(topic, value, key=key)

    async def publish_records(self, records) -> None:
        """Publish (envelope, value) records read from the log again, byte for byte."""
        registry = self.settings.topic_registry()
        await self.retry(
            lambda: self.publish_raw(
                [(registry.fact_topic(e.event_type), e.key.encode(), v) for e, v in records]
            ),
            f"publishing {len(records)} record(s) again",
        )

    async def register_principals(self) -> None:
        now = datetime.now(UTC)
        envelopes = [
            make_envelope(
                spec.fact(),
                event_id=derived_id("principal.registered", spec.principal_id),
                producer=PRODUCER,
                occurred_at=now,
                recorded_at=now,
            )
            for spec in self.workload.principals.values()
        ]
        await self.publish(envelopes)
        ids = sorted(spec.principal_id for spec in self.workload.principals.values())
        for schema in (self.platform.ingest_schema, self.platform.payout_schema):

            async def projected(schema=schema):
                rows = await self.platform.query(
                    f"SELECT principal_id FROM {schema}.principals WHERE principal_id = ANY($1)",
                    ids,
                )
                return len(rows) == len(ids)

            await self.platform.wait_for(projected, f"the principals in {schema}")

    def _upload_step(self, upload: UploadItem) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await self.upload(upload)

        return run

    async def upload(self, upload: UploadItem) -> None:
        path = self.platform.run_dir / "uploads" / upload.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(upload.data)
        spec = UploadSpec(
            path=path,
            dataset_name=f"faults-{upload.contributor.split()[0].lower()}",
            upload_id=upload.upload_id,
            dataset_format=(
                contribution_pb2.DATASET_FORMAT_TEXT
                if upload.file_name.endswith(".txt")
                else contribution_pb2.DATASET_FORMAT_JSONL
            ),
            compression=contribution_pb2.COMPRESSION_NONE,
            byte_size=len(upload.data),
            sha256=hashlib.sha256(upload.data).hexdigest(),
        )
        key = self.workload.principals[upload.contributor].api_key

        async def send():
            async with IngestClient(self.platform.ingest_address, key) as client:
                try:
                    return await client.upload(spec, timeout_s=60)
                except grpc.RpcError as error:
                    if error.code() not in RETRY_UPLOAD_CODES:
                        raise AssertionError(
                            f"upload {upload.index} refused: {error.code().name} {error.details()}"
                        ) from None
                    if error.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ):
                        self.notes.append(
                            f"upload {upload.index}: ingest answered {error.code().name} "
                            f"({error.details()}); retried"
                        )
                    raise

        receipt = await self.retry(send, f"upload {upload.index}")
        expected = self.workload.contribution_id(upload)
        assert receipt.body.contribution_id == expected, (receipt.body, expected)
        await self.platform.wait_for(
            lambda: self._processed(expected), f"preprocessing of upload {upload.index}"
        )

    async def _processed(self, contribution_id: str) -> bool:
        registry = self.settings.topic_registry()
        async with KeyFeed.for_settings(self.settings, registry) as keys:
            records = read_log(self.settings.kafka, registry, ["contribution.processed"], keys)
            async with contextlib.aclosing(records):  # stops the reader's consumer
                async for record in records:
                    if record.envelope.key == contribution_id:
                        return True
        return False

    async def consumer_action(self, action, what: str):
        """Call `action(client)` with a fresh ConsumerClient, retried."""
        spec = self.workload.consumer
        principal = Principal(spec.principal_id, "consumer", spec.name)

        async def attempt():
            registry = self.settings.topic_registry()
            signers = await owner_signers(self.settings, registry)
            producer = FactProducer(
                self.settings.kafka, registry, client_id="consumer-client", signer=signers
            )
            await producer.__aenter__()
            keys = KeyFeed.for_settings(self.settings, registry)
            try:
                await keys.start()
            except BaseException:
                await producer.__aexit__(None, None, None)
                raise
            async with ConsumerClient(self.settings, principal, PartyBus(producer, keys)) as client:
                return await action(client)

        return await self.retry(attempt, what)

    async def snapshot(self, name: str) -> None:
        published = await self.consumer_action(
            lambda c: c.create_snapshot(name=name, all_processed=True), f"snapshot {name}"
        )
        self.ids[name] = published.fact_id
        predicted = self.ids.get(f"{name}:predicted")
        assert predicted in (None, published.fact_id), (name, predicted, published.fact_id)

    async def agreements(self) -> None:
        w = self.workload
        for service, share, currency, minimum in [
            ("chat", w.chat_share_bps, "USD", w.chat_min_payout_minor),
            ("code", w.code_share_bps, "EUR", w.code_min_payout_minor),
        ]:
            published = await self.consumer_action(
                lambda c, s=service, b=share, cur=currency, m=minimum: c.publish_agreement(
                    service=s, share_bps=b, effective_from="2026-01-01", currency=cur,
                    min_payout_minor=m,
                ),
                f"agreement for {service}",
            )  # fmt: skip
            self.ids[f"agreement:{service}"] = published.fact_id

    async def deploy_chat(self) -> None:
        await self.consumer_action(
            lambda c: c.deploy(
                service="chat", snapshot_ids=[self.ids["s1"]], deployed_from="2026-01-01"
            ),
            "deployment of chat",
        )

    async def deploy_code(self) -> None:
        await self.consumer_action(
            lambda c: c.deploy(
                service="code",
                snapshot_ids=[self.ids["s1"], self.ids["s2"]],
                deployed_from="2026-08-01",
                deployment_id=self.workload.code_deployment_id,
            ),
            "deployment of code",
        )

    def code_deployment(self, s2: str) -> consumer_pb2.ServiceDeployed:
        return consumer_pb2.ServiceDeployed(
            deployment_id=self.workload.code_deployment_id,
            consumer_id=self.workload.consumer.principal_id,
            service_id="code",
            snapshot_ids=sorted([self.ids["s1"], s2]),
            deployed_from=timestamp(datetime(2026, 8, 1, tzinfo=UTC)),
        )

    async def deploy_code_ahead(self) -> None:
        """The code deployment published before snapshot s2 exists, naming it by the id
        the client derives from its name: the client would refuse this, but a consumer may
        publish it (the ledger trusts no client), and the same fact results as in the
        natural order."""
        s2 = derived_id("snapshot", self.workload.consumer.principal_id, "s2")
        self.ids["s2:predicted"] = s2
        deployment_id = self.workload.code_deployment_id
        now = datetime.now(UTC)
        envelope = make_envelope(
            self.code_deployment(s2),
            event_id=derived_id("service.deployed", deployment_id),
            producer="consumer-client",
            occurred_at=now,
            recorded_at=now,
        )
        await self.consumer_action(
            lambda c: c.producer.publish(envelope), "deployment of code ahead of s2"
        )

    async def revenue(self, key: str) -> None:
        item = self.workload.revenues[key]
        published = await self.consumer_action(
            lambda c: c.record_revenue(
                service=item.service,
                period=item.period,
                amount_minor=item.amount_minor,
                currency=item.currency,
                external_id=item.external_id(self.workload.seed),
            ),
            f"revenue {key}",
        )
        assert published.fact_id == self.workload.revenue_id(key)
        self.published_revenue.append(published.fact_id)
        if self.awkward and key == "R3":
            await self._wait_parked(published.fact_id)

    async def _wait_parked(self, revenue_id: str) -> None:
        """Revenue published before its deployment: the ledger must park it (it cannot
        be released before the deployment exists), not drop or reject it."""

        async def examined():
            rows = await self.platform.query(
                f"SELECT status, status_reason FROM {self.platform.ledger_schema}.revenue "
                "WHERE revenue_id = $1 AND status_reason <> 'not yet examined'",
                revenue_id,
            )
            return rows[0] if rows else None

        row = await self.platform.wait_for(examined, "the ledger to examine revenue R3")
        assert row["status"] == "parked", f"revenue R3 before its deployment: {dict(row)}"
        self.parked_reason = row["status_reason"]

    async def adjust(self) -> None:
        w = self.workload
        published = await self.consumer_action(
            lambda c: c.adjust_revenue(
                external_id=w.revenues["R1"].external_id(w.seed),
                adjustment_id=w.adjustment_external_id,
                delta_minor=w.adjustment_delta_minor,
                reason="refund of part of the month",
            ),
            "adjustment of R1",
        )
        assert published.fact_id == w.adjustment_id
        self.published_revenue.append(published.fact_id)

    async def payout_run(self, period: str) -> None:
        await self.settle()
        key = self.workload.operator.api_key

        async def post():
            async with httpx.AsyncClient(timeout=60) as http:
                response = await http.post(
                    f"{self.platform.payout_url}/v1/payout-runs",
                    json={"period": period},
                    headers={"Authorization": f"Bearer {key}"},
                )
            if response.status_code >= 500 or response.status_code == 409:
                self.notes.append(
                    f"payout run {period}: HTTP {response.status_code} {response.text[:300]}; "
                    "retried"
                )
                raise httpx.TransportError(f"HTTP {response.status_code}")
            assert response.status_code == 200, (response.status_code, response.text)
            return response.json()

        answer = await self.retry(post, f"payout run {period}")
        self.payout_runs.setdefault(period, answer)
        await self.settle()

    # -- quiescence ----------------------------------------------------------------------

    async def settle(self, timeout_s: float = 240) -> None:
        """Wait until every revenue event published so far is decided by the ledger, both
        outboxes are published, and the payout service holds every allocation and payout."""
        platform = self.platform
        ledger, payout = platform.ledger_schema, platform.payout_schema
        revenue_ids = list(self.published_revenue)
        agreement_ids = [v for k, v in self.ids.items() if k.startswith("agreement:")]

        async def quiet() -> bool:
            rows = await platform.query(
                f"SELECT revenue_id, status FROM {ledger}.revenue WHERE revenue_id = ANY($1)",
                revenue_ids,
            )
            if len(rows) < len(revenue_ids) or any(r["status"] == "parked" for r in rows):
                return False
            [pending] = await platform.query(
                f"SELECT (SELECT count(*) FROM {ledger}.outbox WHERE published_at IS NULL) + "
                f"(SELECT count(*) FROM {payout}.outbox WHERE published_at IS NULL) AS n"
            )
            if pending["n"]:
                return False
            [missing] = await platform.query(
                f"SELECT (SELECT count(*) FROM {ledger}.allocations l WHERE NOT EXISTS "
                f"(SELECT 1 FROM {payout}.allocations p WHERE p.allocation_id = "
                f"l.allocation_id)) + (SELECT count(*) FROM unnest($1::text[]) a(id) WHERE "
                f"NOT EXISTS (SELECT 1 FROM {payout}.agreements g WHERE g.agreement_id = a.id)) "
                "AS n",
                agreement_ids,
            )
            return missing["n"] == 0

        try:
            await platform.wait_for(quiet, "the ledger and payout to settle", timeout_s=timeout_s)
        except PlatformFailure as failure:
            states = await self._revenue_states()
            raise PlatformFailure(f"{failure}\nledger revenue: {states}") from None

    async def _revenue_states(self) -> str:
        try:
            rows = await self.platform.query(
                f"SELECT revenue_id, kind, status, status_reason FROM "
                f"{self.platform.ledger_schema}.revenue ORDER BY revenue_id"
            )
        except Exception as error:
            return f"unreadable ({error!r})"
        known = {row["revenue_id"] for row in rows}
        missing = [r for r in self.published_revenue if r not in known]
        states = [
            f"{r['revenue_id']} {r['kind']} {r['status']} {r['status_reason']!r}" for r in rows
        ]
        return "; ".join(states) + (f"; not in the ledger: {missing}" if missing else "")

    # -- results -------------------------------------------------------------------------

    async def statements(self) -> dict[str, dict[str, dict]]:
        """Each contributor's statement for each period, normalised: by contributor name,
        period and currency; amounts, balances and the allocations (ids are derived from
        the seed, so they are the same in every run)."""
        key = self.workload.operator.api_key
        result: dict[str, dict[str, dict]] = {}
        async with httpx.AsyncClient(timeout=30) as http:
            for name in self.workload.contributors:
                contributor_id = self.workload.principals[name].principal_id
                for period in PERIODS:
                    url = (
                        f"{self.platform.payout_url}/v1/contributors/{contributor_id}"
                        f"/statements/{period}"
                    )

                    async def fetch(url=url):
                        response = await http.get(url, headers={"Authorization": f"Bearer {key}"})
                        if response.status_code >= 500:
                            raise httpx.TransportError(f"HTTP {response.status_code}")
                        assert response.status_code == 200, (response.status_code, response.text)
                        return response.json()

                    body = await self.retry(fetch, f"statement of {name} for {period}")
                    result.setdefault(name, {})[period] = normalise_statement(body)
        return result

    async def log_facts(self, *event_types: str) -> dict[str, list]:
        """Every record of `event_types` on this platform's log (resends included)."""

        async def read():
            found: dict[str, list] = {t: [] for t in event_types}
            registry = self.settings.topic_registry()
            async with KeyFeed.for_settings(self.settings, registry) as keys:
                async for record in read_log(self.settings.kafka, registry, event_types, keys):
                    found[record.envelope.event_type].append(record.envelope)
            return found

        return await self.retry(read, f"reading {', '.join(event_types)}")

    async def log_records(self, *event_types: str) -> dict[str, list]:
        """Every trusted record of `event_types` on this platform's log: (envelope, value)."""

        async def read():
            found: dict[str, list] = {t: [] for t in event_types}
            registry = self.settings.topic_registry()
            async with KeyFeed.for_settings(self.settings, registry) as keys:
                async for record in read_log(self.settings.kafka, registry, event_types, keys):
                    found[record.envelope.event_type].append((record.envelope, record.value))
            return found

        return await self.retry(read, f"reading {', '.join(event_types)}")

    async def accepted_tokens(self) -> dict[int, int]:
        """Upload index -> tokens accepted (the last processed fact of each)."""
        facts = (await self.log_facts("contribution.processed"))["contribution.processed"]
        by_id = {payload_of(e).contribution_id: payload_of(e).tokens_accepted for e in facts}
        return {
            u.index: by_id.get(self.workload.contribution_id(u), -1) for u in self.workload.uploads
        }


def normalise_statement(body: dict) -> dict:
    sections = {}
    for section in body["statements"]:
        sections[section["currency"]] = {
            "status": section["status"],
            "payout_id": section["payout_id"],
            "opening_carried_micros": section["opening_carried_micros"],
            "allocated_micros": section["allocated_micros"],
            "amount_minor": section["amount_minor"],
            "closing_carried_micros": section["closing_carried_micros"],
            "balanced": section["balanced"],
            "allocation_count": len(section["allocations"]),
            "allocations": sorted(
                (a["allocation_id"], a["revenue_id"], a["contribution_id"], a["allocated_micros"])
                for a in section["allocations"]
            ),
        }
    return {"contributor": body["contributor_name"], "sections": sections}


def write_files(workload: Workload, folder: Path) -> list[Path]:
    """The workload's upload files in `folder` (to look at, or to run `1tt estimate` on)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for upload in workload.uploads:
        path = folder / upload.file_name
        path.write_bytes(upload.data)
        paths.append(path)
    return paths
