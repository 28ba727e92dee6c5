import pytest

from services.common.migrations import BUS_SQL_DIR, MigrationError, load_migrations


def test_the_bus_migrations_load_in_order():
    migrations = load_migrations("bus", BUS_SQL_DIR)
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert "CREATE TABLE inbox" in migrations[0].sql


def test_a_gap_in_versions_is_refused(tmp_path):
    (tmp_path / "0001_a.sql").write_text("select 1;")
    (tmp_path / "0003_c.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match="expected migration 0002 next"):
        load_migrations("x", tmp_path)


def test_a_badly_named_file_is_refused(tmp_path):
    (tmp_path / "1_Init.sql").write_text("select 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lower_case_name\.sql"):
        load_migrations("x", tmp_path)
