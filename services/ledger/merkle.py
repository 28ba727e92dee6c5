"""The Merkle root of a snapshot's member set (docs/allocation.md, "Snapshot digest").

A leaf is SHA-256 over 0x00 followed by the member's canonical line, UTF-8:
    contribution_id US contributor_id US tokens_accepted (decimal) US processed_event_id
(US = the ASCII unit separator 0x1F), leaves ordered by contribution_id. A parent is
SHA-256 over 0x01 followed by its two children's digests; a level with an odd number of
nodes carries its last node up unchanged (services.common.merkle). The root is written in
lower-case hex.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common import merkle
from tt.facts.v1 import consumer_pb2

_SEPARATOR = "\x1f"


def leaf(member: consumer_pb2.SnapshotMember) -> bytes:
    line = _SEPARATOR.join(
        (
            member.contribution_id,
            member.contributor_id,
            str(member.tokens_accepted),
            member.processed_event_id,
        )
    )
    return merkle.leaf_digest(line.encode("utf-8"))


def merkle_root(members: Sequence[consumer_pb2.SnapshotMember]) -> str:
    if not members:
        raise ValueError("a snapshot needs at least one member")
    return merkle.root([leaf(m) for m in sorted(members, key=lambda m: m.contribution_id)]).hex()
