"""The Merkle root of a snapshot's member set (docs/allocation.md, "Snapshot digest").

A leaf is SHA-256 over 0x00 followed by the member's canonical line, UTF-8:
    contribution_id US contributor_id US tokens_accepted (decimal) US processed_event_id
(US = the ASCII unit separator 0x1F), leaves ordered by contribution_id. A parent is
SHA-256 over 0x01 followed by its two children's digests; a level with an odd number of
nodes carries its last node up unchanged. The root is written in lower-case hex. The
0x00/0x01 prefixes keep a leaf from ever being mistaken for a parent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

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
    return hashlib.sha256(b"\x00" + line.encode("utf-8")).digest()


def merkle_root(members: Sequence[consumer_pb2.SnapshotMember]) -> str:
    if not members:
        raise ValueError("a snapshot needs at least one member")
    level = [leaf(m) for m in sorted(members, key=lambda m: m.contribution_id)]
    while len(level) > 1:
        parents = [
            hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            parents.append(level[-1])
        level = parents
    return level[0].hex()
