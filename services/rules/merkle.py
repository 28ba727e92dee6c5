"""The Merkle tree the platform uses wherever a set of items is committed to by one digest:
a snapshot's members (docs/allocation.md, "Snapshot digest") and a signed batch of facts
(docs/security.md, "Signed facts").

A leaf is SHA-256 over 0x00 followed by the item's bytes. A parent is SHA-256 over 0x01
followed by its two children's digests; a level with an odd number of nodes carries its
last node up unchanged. The 0x00/0x01 prefixes keep a leaf from ever being mistaken for a
parent. A tree of one leaf has that leaf as its root.

A snapshot's digest (`snapshot_root`): one leaf per member, the member's canonical line
in UTF-8,
    contribution_id US contributor_id US tokens_accepted (decimal) US processed_event_id
(US = the ASCII unit separator 0x1F), leaves ordered by contribution_id, the root written
in lower-case hex.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from tt.facts.v1 import consumer_pb2

LEAF = b"\x00"
PARENT = b"\x01"


class MerkleProofError(ValueError):
    """An inclusion path does not fit the position and tree size it claims."""


def leaf_digest(item: bytes) -> bytes:
    return hashlib.sha256(LEAF + item).digest()


def _parent(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(PARENT + left + right).digest()


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    if not leaves:
        raise ValueError("a Merkle tree needs at least one leaf")
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        parents = [_parent(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            parents.append(level[-1])
        levels.append(parents)
    return levels


def root(leaves: Sequence[bytes]) -> bytes:
    """The root over leaf digests (already hashed with `leaf_digest`), in their order."""
    return _levels(leaves)[-1][0]


def root_and_paths(leaves: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The root, and for each leaf the sibling digests on its way up (bottom first). A
    node carried up from an odd level has no sibling there, so paths can differ in length."""
    levels = _levels(leaves)
    paths: list[list[bytes]] = []
    for index in range(len(leaves)):
        path = []
        for level in levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index //= 2
        paths.append(path)
    return levels[-1][0], paths


def root_from_path(leaf: bytes, index: int, count: int, path: Sequence[bytes]) -> bytes:
    """The root implied by `leaf` at `index` of a tree of `count` leaves and its `path`.
    MerkleProofError if the path has the wrong length for that position."""
    if count < 1 or not 0 <= index < count:
        raise MerkleProofError(f"leaf {index} cannot be in a tree of {count} leaves")
    node, siblings = leaf, iter(path)
    try:
        while count > 1:
            if index % 2:
                node = _parent(next(siblings), node)
            elif index + 1 < count:
                node = _parent(node, next(siblings))
            index, count = index // 2, (count + 1) // 2
    except StopIteration:
        raise MerkleProofError("the inclusion path is shorter than the tree is deep") from None
    if next(siblings, None) is not None:
        raise MerkleProofError("the inclusion path is longer than the tree is deep")
    return node


# -- a snapshot's digest -------------------------------------------------------------------

_SEPARATOR = "\x1f"


def member_leaf(member: consumer_pb2.SnapshotMember) -> bytes:
    line = _SEPARATOR.join(
        (
            member.contribution_id,
            member.contributor_id,
            str(member.tokens_accepted),
            member.processed_event_id,
        )
    )
    return leaf_digest(line.encode("utf-8"))


def snapshot_root(members: Sequence[consumer_pb2.SnapshotMember]) -> str:
    """The hex root a snapshot.created fact must carry as its merkle_root."""
    if not members:
        raise ValueError("a snapshot needs at least one member")
    return root([member_leaf(m) for m in sorted(members, key=lambda m: m.contribution_id)]).hex()
