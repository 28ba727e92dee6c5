"""The report's accounting: every document and token is kept or removed for one reason."""

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.facts import make_envelope
from services.common.validation import validate_envelope
from services.preprocess.dedup import EARLIER_CONTRIBUTION, REFERENCE_CORPUS, WITHIN_UPLOAD, Verdict
from services.preprocess.pipeline import EMPTY, LANGUAGE, QUALITY, DocResult, PipelineConfig
from services.preprocess.report import ReportBuilder
from tt.facts.v1 import common_pb2

REMOVALS = st.sampled_from([None, (EMPTY, ""), (LANGUAGE, "xx"), (QUALITY, "min_words")])
VERDICTS = st.one_of(
    st.none(),
    st.builds(
        Verdict,
        doc_index=st.just(0),
        kind=st.sampled_from(["exact", "near"]),
        scope=st.sampled_from([WITHIN_UPLOAD, EARLIER_CONTRIBUTION, REFERENCE_CORPUS]),
    ),
)
DOCS = st.lists(
    st.tuples(
        st.integers(0, 5000),
        REMOVALS,
        VERDICTS,
        st.dictionaries(st.sampled_from(["email", "phone"]), st.integers(1, 3)),
        st.floats(0, 1),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(DOCS)
def test_every_document_and_token_is_accounted_for_and_the_fact_is_valid(docs):
    builder = ReportBuilder(PipelineConfig())
    for index, (tokens, removal, verdict, redactions, score) in enumerate(docs):
        result = DocResult(
            index,
            f"d{index}",
            tokens,
            "en",
            None if removal == (EMPTY, "") else score,
            removal,
            redactions,
            None,
            "text",
            "text",
        )
        # A document removed before dedup never gets a verdict.
        builder.add(result, None if removal else verdict)
    report = builder.to_dict()
    removed_docs = sum(r["documents"] for r in report["removals"])
    removed_tokens = sum(r["tokens"] for r in report["removals"])
    assert report["documents"]["in"] == len(docs) == report["documents"]["kept"] + removed_docs
    assert report["tokens"]["raw"] == report["tokens"]["accepted"] + removed_tokens
    assert report["tokens"]["accepted"] <= report["tokens"]["raw"]
    kept = [d for d in docs if not d[1] and not d[2]]
    assert report["tokens"]["accepted"] == sum(d[0] for d in kept)
    assert sum(report["languages"].values()) == len(kept)

    shard = common_pb2.BlobRef(uri="blob://sha256/" + "a" * 64, sha256="a" * 64, byte_size=1)
    fact = builder.to_fact("c1", "p1", [shard], shard)
    now = datetime.now(UTC)
    validate_envelope(
        make_envelope(fact, event_id="e", producer="t", occurred_at=now, recorded_at=now)
    )


def test_a_duplicate_names_where_the_earlier_copy_is_never_whose():
    builder = ReportBuilder(PipelineConfig())
    result = DocResult(0, "d0", 10, "en", 0.9, None, {}, None, "text", "excerpt")
    builder.add(result, Verdict(0, "near", EARLIER_CONTRIBUTION))
    [removal] = builder.to_dict()["removals"]
    assert (removal["reason"], removal["detail"]) == ("near_duplicate", "earlier_contribution")
    assert removal["examples"] == [{"document": "d0", "excerpt": "excerpt"}]
