"""The fault suite's seeds, its marker, and its summary.

Seeds: TT_FAULT_SEEDS (a comma list) runs exactly those; otherwise TT_FAULT_SEED_COUNT
(default 1) seeds counting up from a random base seed, printed, so that any failure can
be run again with TT_FAULT_SEEDS=<seed>.
"""

from __future__ import annotations

import os
import random

import pytest

RESULTS: list[dict] = []  # one per seed run: {"seed", "faults", "breakdown", "seconds"}
_BASE_SEED: list[int] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "faults: kills, restarts, duplicates and reordering against the whole platform "
        "(tests/faults; needs the local stack, which it restarts)",
    )


def fault_seeds() -> list[int]:
    listed = os.environ.get("TT_FAULT_SEEDS", "").strip()
    if listed:
        return [int(part) for part in listed.split(",") if part.strip()]
    count = int(os.environ.get("TT_FAULT_SEED_COUNT", "1"))
    if not _BASE_SEED:
        _BASE_SEED.append(random.SystemRandom().randrange(1, 1_000_000))
    return [_BASE_SEED[0] + n for n in range(count)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault_seed" in metafunc.fixturenames:
        seeds = fault_seeds()
        metafunc.parametrize("fault_seed", seeds, ids=[f"seed={seed}" for seed in seeds])


@pytest.fixture
def fault_results() -> list[dict]:
    return RESULTS


def pytest_terminal_summary(terminalreporter) -> None:
    if not RESULTS and not _BASE_SEED:
        return
    write = terminalreporter.write_line
    if _BASE_SEED:
        write(
            f"fault suite: base seed {_BASE_SEED[0]} (run one seed again with "
            "TT_FAULT_SEEDS=<seed>)"
        )
    for result in RESULTS:
        write(
            f"fault suite: seed={result['seed']} faults={result['faults']} "
            f"({result['breakdown']}) {result['seconds']:.0f}s {result['outcome']}"
        )
    write(
        f"fault suite: seeds={len(RESULTS)} "
        f"faults_injected={sum(result['faults'] for result in RESULTS)}"
    )
