"""The money rules, written once: pure functions without I/O (docs/money.md).

- `allocation`: the pool of a revenue event, who may claim it, and the split;
- `terms`: which agreement and which deployments govern a service's period;
- `admission`: allocate, wait for a named fact, or reject, with the reason;
- `settlement`: a contributor's payout, the minimum and what is carried forward;
- `ids`: every derived id and the namespace behind it;
- `merkle`: the tree behind a snapshot's digest and a signed batch of facts.

The ledger, payout, the consumer's client and the audit call these; none of them has
rules of its own. The package imports nothing from a service (tests/unit/test_imports.py).
"""
