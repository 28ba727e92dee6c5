"""The shape of the house: a service package imports only its own modules and the shared
packages (`services.common`, `services.rules`), never another service's; the rules import
nothing that does I/O. A rule needed by two services lives once, in services/rules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICES = Path(__file__).resolve().parents[2] / "services"
SHARED = {"common", "rules"}
SERVICE_PACKAGES = ("ingest", "preprocess", "ledger", "payout", "audit", "consumer")
# Modules that talk to the outside world: none of them belongs in the pure rules.
IO_MODULES = {
    "aiokafka", "asyncio", "asyncpg", "confluent_kafka", "faust", "grpc", "http", "httpx",
    "os", "pathlib", "requests", "shutil", "socket", "subprocess", "urllib",
}  # fmt: skip


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (imports inside functions count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_imports(package: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(SERVICES.parent)): imports_of(path)
        for path in sorted((SERVICES / package).rglob("*.py"))
    }


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
def test_a_service_imports_no_other_service(package):
    crossing = {
        (module, name)
        for module, names in package_imports(package).items()
        for name in names
        if name.startswith("services.")
        and name.split(".")[1] not in SHARED | {package}
        and name.split(".")[1] in (*SERVICE_PACKAGES, "cli")
    }
    assert not crossing, f"{package} imports another service's code: {sorted(crossing)}"


@pytest.mark.parametrize("package", sorted(SHARED))
def test_the_shared_packages_import_no_service(package):
    crossing = {
        (module, name)
        for module, names in package_imports(package).items()
        for name in names
        if name.startswith("services.") and name.split(".")[1] not in SHARED
    }
    assert not crossing, f"services.{package} imports a service: {sorted(crossing)}"


def test_the_rules_are_pure():
    impure = {
        (module, name)
        for module, names in package_imports("rules").items()
        for name in names
        if name.split(".")[0] in IO_MODULES
        or (name.startswith("services.common.") and name.split(".")[2] not in {"money", "periods"})
    }
    assert not impure, f"services.rules reaches for I/O: {sorted(impure)}"


def test_the_check_sees_a_crossing(tmp_path):
    """The walker finds an import however it is written (a check that cannot fail proves
    nothing)."""
    module = tmp_path / "m.py"
    module.write_text(
        "import services.ledger.main\ndef f():\n    from services.payout import api\n"
    )
    assert {"services.ledger.main", "services.payout", "services.payout.api"} <= imports_of(module)
