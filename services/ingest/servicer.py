"""The IngestService gRPC servicer: authenticate, authorise, call the core, map errors.

Every string a client sends is checked before it is used or published (ids, reasons,
upload metadata: see upload.py), so nothing any reader of the log would refuse is ever
put on it. An unexpected error never reaches the client as text: InternalErrorInterceptor
answers INTERNAL with a generic message and a correlation id, and logs the details.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
from aiokafka.errors import KafkaError

from services.common.blobstore import BlobError
from services.common.bus import FactProducer
from services.common.db import DATABASE_UNAVAILABLE
from services.common.facts import make_envelope
from services.common.identity import (
    Principal,
    api_key_from_authorization,
    api_key_sha256,
    with_article,
)
from services.common.validation import FactValidationError, text_problem, validate_envelope
from services.ingest import projection, terms
from services.ingest.receipts import ReceiptSigner
from services.ingest.upload import UploadContext, UploadFailure, accept_upload
from services.rules.ids import derived_id
from tt.facts.v1 import contribution_pb2
from tt.ingest.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
# A withdrawal may not take effect in the past; allow for clock skew between machines.
WITHDRAW_SKEW = timedelta(minutes=1)


class Authenticator:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def require(self, context: grpc.aio.ServicerContext, *roles: str) -> Principal:
        """The calling principal, or abort: UNAUTHENTICATED without a known key,
        PERMISSION_DENIED when its role may not make this call."""
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        key = api_key_from_authorization(metadata.get("authorization"))
        if key is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or malformed API key: send the metadata 'authorization: Bearer "
                "<key>' (the 1tt command reads TT_API_KEY or --api-key)",
            )
        principal = await projection.principal_by_key_digest(self.pool, api_key_sha256(key))
        if principal is None:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "this API key is not known to the platform"
            )
        if principal.role not in roles:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"this call is for the {' or '.join(roles)} role; the key belongs to "
                f"{principal.name!r}, {with_article(principal.role)}",
            )
        return principal


def _database_unavailable_is_unavailable(method):
    @functools.wraps(method)
    async def rpc(self, request, context):
        try:
            return await method(self, request, context)
        except DATABASE_UNAVAILABLE as error:
            log.warning("%s: database unavailable: %r", method.__name__, error)
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                "the platform's database is unavailable for a moment; retry (with the same "
                "upload id, an upload is not recorded twice)",
            )

    return rpc


class InternalErrorInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every method of the server (IngestService, health, reflection): an exception
    other than a deliberate abort is logged with a fresh correlation id and answered
    INTERNAL with a generic message naming that id; its text never reaches the client,
    which gRPC would otherwise send ("Unexpected <class ...>: ...")."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        for kind in ("unary_unary", "stream_unary", "unary_stream", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is None:
                continue
            if inspect.isasyncgenfunction(behaviour):
                wrapped = _guard_stream(behaviour, method)
            elif inspect.iscoroutinefunction(behaviour):
                wrapped = _guard(behaviour, method)
            else:
                return handler  # a synchronous behaviour: not used by this server
            return handler._replace(**{kind: wrapped})
        return handler


async def _internal(context, method: str, error: BaseException):
    correlation_id = uuid.uuid4().hex
    log.error("%s failed (correlation id %s)", method, correlation_id, exc_info=error)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"the platform failed to answer; quote correlation id {correlation_id} when you report it",
        trailing_metadata=(("tt-correlation-id", correlation_id),),
    )


def _guard(behaviour, method: str):
    @functools.wraps(behaviour)
    async def guarded(request, context):
        try:
            return await behaviour(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _internal(context, method, error)

    return guarded


def _guard_stream(behaviour, method: str):
    @functools.wraps(behaviour)
    async def guarded(request, context):
        try:
            async for response in behaviour(request, context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _internal(context, method, error)

    return guarded


async def _check_text(context, field: str, value: str) -> None:
    """INVALID_ARGUMENT for a string no fact (and no table) could hold."""
    problem = text_problem(field, value)
    if problem is not None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        producer: FactProducer,
        signer: ReceiptSigner,
        upload_context: UploadContext,
        read_report: Callable[[str], str] | None = None,
    ):
        self.pool = pool
        self.producer = producer
        self.signer = signer
        self.upload_context = upload_context
        self.auth = Authenticator(pool)
        self.read_report = read_report

    @_database_unavailable_is_unavailable
    async def Upload(self, request_iterator, context):
        principal = await self.auth.require(context, "contributor")
        try:
            receipt = await accept_upload(request_iterator, principal, self.upload_context)
        except UploadFailure as failure:
            log.info(
                "upload by %s refused (%s): %s", principal.principal_id, failure.code.name, failure
            )
            await context.abort(failure.code, str(failure))
        return ingest_pb2.UploadResponse(receipt=receipt)

    @_database_unavailable_is_unavailable
    async def GetContribution(self, request, context):
        principal = await self.auth.require(context, "contributor")
        contribution = await self._own(context, principal, request.contribution_id)
        uri = contribution.report.report.uri if contribution.HasField("report") else ""
        if uri and self.read_report is not None:
            try:
                contribution.report_json = await asyncio.to_thread(self.read_report, uri)
            except (BlobError, OSError) as error:
                # The summary in the fact is still there; say why the detail is missing.
                log.warning(
                    "report %s of %s unreadable: %s", uri, contribution.contribution_id, error
                )
        return ingest_pb2.GetContributionResponse(contribution=contribution)

    @_database_unavailable_is_unavailable
    async def ListContributions(self, request, context):
        principal = await self.auth.require(context, "contributor")
        if request.page_size > MAX_PAGE_SIZE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"page_size may be at most {MAX_PAGE_SIZE}"
            )
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        after = await _parse_page_token(context, request.page_token)
        contributions = await projection.list_contributions(
            self.pool, principal.principal_id, page_size, after
        )
        response = ingest_pb2.ListContributionsResponse(contributions=contributions)
        if len(contributions) == page_size:
            last = contributions[-1]
            response.next_page_token = _page_token(
                last.receipt.body.received_at.ToDatetime(tzinfo=UTC), last.contribution_id
            )
        return response

    @_database_unavailable_is_unavailable
    async def Withdraw(self, request, context):
        principal = await self.auth.require(context, "contributor")
        await self._own(context, principal, request.contribution_id)
        # One withdrawal per contribution: concurrent calls are serialised, and the second
        # sees the first's result instead of putting a second, different fact on the log.
        async with self.pool.acquire() as conn:
            lock = f"withdraw:{request.contribution_id}"
            await conn.execute("SELECT pg_advisory_lock(hashtext($1))", lock)
            try:
                return await self._withdraw(context, principal, request)
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", lock)

    async def _withdraw(self, context, principal, request):
        await _check_text(context, "reason", request.reason)
        contribution = await self._own(context, principal, request.contribution_id)
        now = datetime.now(UTC)
        effective = (
            request.effective_at.ToDatetime(tzinfo=UTC) if request.HasField("effective_at") else now
        )
        if contribution.state == ingest_pb2.CONTRIBUTION_STATE_WITHDRAWN:
            return await self._already_withdrawn(context, request, contribution)
        if effective < now - WITHDRAW_SKEW:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"effective_at {effective.isoformat()} is in the past; a "
                "withdrawal takes effect now or later",
            )
        fact = contribution_pb2.ContributionWithdrawn(
            contribution_id=contribution.contribution_id,
            contributor_id=principal.principal_id,
            reason=request.reason,
        )
        fact.effective_at.FromDatetime(effective)
        envelope = make_envelope(
            fact,
            event_id=derived_id("contribution.withdrawn", contribution.contribution_id),
            producer="ingest",
            occurred_at=now,
            recorded_at=now,
        )
        try:
            validate_envelope(envelope)
        except FactValidationError as error:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the withdrawal cannot be recorded: {'; '.join(error.problems)}",
            )
        try:
            await self.producer.publish(envelope)
        except KafkaError as error:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE,
                f"the event log did not acknowledge the withdrawal ({type(error).__name__}); retry",
            )
        async with self.pool.acquire() as conn:
            await projection.record_withdrawn(conn, envelope)
        return ingest_pb2.WithdrawResponse(
            contribution_id=contribution.contribution_id,
            effective_at=fact.effective_at,
            event_id=envelope.event_id,
        )

    @_database_unavailable_is_unavailable
    async def GetReceiptKey(self, request, context):
        return ingest_pb2.GetReceiptKeyResponse(
            key_id=self.signer.key_id, public_key=self.signer.public_key_raw
        )

    async def GetTerms(self, request, context):
        """Public, like the receipt key: anyone may read the terms before contributing."""
        return ingest_pb2.GetTermsResponse(
            terms=[
                ingest_pb2.TermsDocument(
                    terms_id=terms_id, terms_sha256=digest, text=terms.terms_text(terms_id)
                )
                for terms_id, digest in terms.accepted_terms().items()
            ],
            current_terms_id=terms.CURRENT_TERMS_ID,
        )

    async def _own(self, context, principal, contribution_id) -> ingest_pb2.Contribution:
        await _check_text(context, "contribution_id", contribution_id)
        contribution = await projection.get_contribution(
            self.pool, principal.principal_id, contribution_id
        )
        if contribution is None:
            # The same answer whether it does not exist or belongs to someone else.
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"you have no contribution {contribution_id!r}"
            )
        return contribution

    async def _already_withdrawn(self, context, request, contribution):
        effective = contribution.withdrawn_effective_at
        if request.HasField("effective_at") and request.effective_at != effective:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"contribution {contribution.contribution_id} is already withdrawn, effective "
                f"{effective.ToDatetime(tzinfo=UTC).isoformat()}",
            )
        return ingest_pb2.WithdrawResponse(
            contribution_id=contribution.contribution_id,
            effective_at=effective,
            event_id=derived_id("contribution.withdrawn", contribution.contribution_id),
        )


def _page_token(received_at: datetime, contribution_id: str) -> str:
    raw = f"{received_at.isoformat()}|{contribution_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


async def _parse_page_token(context, token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        moment, _, contribution_id = base64.urlsafe_b64decode(token).decode().partition("|")
        after = datetime.fromisoformat(moment)
        if after.tzinfo is None or text_problem("contribution_id", contribution_id):
            raise ValueError("not a token of ours")
        return after, contribution_id
    except ValueError:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token is not one this service issued; start without it",
        )
