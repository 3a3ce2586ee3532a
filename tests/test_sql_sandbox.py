"""store.sql() (and so ``finetuner sql``) can reach nothing but the store, enforced by DuckDB.

The statement-kind check in ``sql()`` is only the friendly first error. The guard is the
connection: read-only, external access off, no extensions, no persistent secrets, no temp
spill, configuration locked. So each attack is tried twice: through ``store.sql()``, and on the
sandboxed connection itself, bypassing the kind check. Either way the store stays byte for byte
what it was and no file appears anywhere under the test's directory (the home directory, where
DuckDB keeps extensions and secrets, included).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetuner_otel import Store, StoreError
from finetuner_otel.store._connection import connect


@dataclass(frozen=True)
class Victim:
    root: Path
    store: Store
    link: Path  # a hard link of the store file: the same bytes under another name
    importdir: Path  # an IMPORT DATABASE script that attaches the link and deletes every row
    beside: Path  # a private file next to the store
    out: Path  # where an attack would write

    def fill(self, template: str) -> str:
        return template.format(
            root=self.root,
            store=self.store.path,
            link=self.link,
            importdir=self.importdir,
            beside=self.beside,
            out=self.out,
        )


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under root with its content's hash (or 'dir')."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = f"link to {os.readlink(path)}"
        elif path.is_dir():
            found[name] = "dir"
        else:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _make_victim(root: Path) -> Victim:
    store = Store(root / "store" / "finetuner.duckdb")
    store.add_examples(
        [
            {
                "messages": [
                    {"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": "a"},
                ]
            }
            for i in range(3)
        ],
        dataset="d",
    )
    link = root / "link.duckdb"
    os.link(store.path, link)
    importdir = root / "import"
    importdir.mkdir()
    (importdir / "schema.sql").write_text(
        f"ATTACH '{link}' AS victim (READ_WRITE); DELETE FROM victim.recorded_calls;\n"
    )
    (importdir / "load.sql").write_text(f"COPY victim.recorded_calls TO '{root / 'stolen.csv'}';\n")
    beside = store.path.with_name("secret.txt")
    beside.write_text("the API key is sk-not-for-you\n")
    return Victim(root, store, link, importdir, beside, root / "out.csv")


@pytest.fixture
def victim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Victim:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # DuckDB's ~/.duckdb (extensions, secrets)
    return _make_victim(tmp_path)


# Each class of attack, as a statement template.
ATTACKS = {
    # writes a file: EXPLAIN ANALYZE runs the COPY it explains
    "explain-analyze-copy": "EXPLAIN ANALYZE COPY (SELECT * FROM recorded_calls) TO '{out}'",
    "explain-analyze-copy-parquet": (
        "EXPLAIN ANALYZE COPY recorded_calls TO '{out}' (FORMAT parquet)"
    ),
    "copy-to": "COPY recorded_calls TO '{out}'",
    "export-database": "EXPORT DATABASE '{root}/exported'",
    # DuckDB reports IMPORT DATABASE as a PRAGMA; its script attaches a hard link of the store
    "import-database": "IMPORT DATABASE '{importdir}'",
    "pragma-import-database": "PRAGMA import_database('{importdir}')",
    "attach-hard-link-read-write": "ATTACH '{link}' AS victim (READ_WRITE)",
    "attach-new-file": "ATTACH '{root}/other.duckdb' AS other",
    "attach-memory": "ATTACH ':memory:' AS scratch",
    # reads other files
    "read-text-etc-passwd": "SELECT * FROM read_text('/etc/passwd')",
    "read-csv-etc-passwd": "SELECT * FROM read_csv('/etc/passwd', sep = ':')",
    "read-blob-beside-the-store": "SELECT * FROM read_blob('{beside}')",
    "read-json-beside-the-store": "SELECT * FROM read_json_auto('{beside}')",
    "parquet-metadata-beside": "SELECT * FROM parquet_metadata('{beside}')",
    "read-the-store-through-a-link": "SELECT * FROM read_blob('{link}')",
    "glob": "SELECT * FROM glob('{root}/*')",
    # settings
    "set": "SET threads = 1",
    "set-external-access-back-on": "SET enable_external_access = true",
    "reset-lock": "RESET lock_configuration",
    "set-global-lock-off": "SET GLOBAL lock_configuration = false",
    "pragma-setting": "PRAGMA threads = 1",
    "pragma-profiling-to-a-file": "PRAGMA profiling_output = '{out}'",
    # extensions
    "install": "INSTALL httpfs",
    "force-install": "FORCE INSTALL json",
    "load": "LOAD httpfs",
    "load-a-file": "LOAD '{root}/evil.duckdb_extension'",
    # side-effecting calls
    "call-enable-logging-to-a-file": (
        "CALL enable_logging(storage = 'file', storage_path = '{root}/logs')"
    ),
    "persistent-secret": "CREATE PERSISTENT SECRET s (TYPE http, BEARER_TOKEN 'x')",
    # more than one statement, the second one writing
    "multiple-statements": "SELECT 1; COPY recorded_calls TO '{out}'",
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_is_refused_in_one_line_and_changes_nothing(
    victim: Victim, attack: str
) -> None:
    statement = victim.fill(ATTACKS[attack])
    before = _snapshot(victim.root)
    with pytest.raises(StoreError) as refused:
        victim.store.sql(statement)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("store.sql()")
    assert _snapshot(victim.root) == before
    assert len(victim.store.sql("SELECT * FROM recorded_calls")) == 3


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_the_sandbox_itself_refuses_each_attack(victim: Victim, attack: str) -> None:
    """Past the kind check: the connection alone is the guard."""
    statement = victim.fill(ATTACKS[attack])
    before = _snapshot(victim.root)
    with connect(victim.store.path, read_only=True, sandbox=True) as con:
        with pytest.raises(duckdb.Error):
            con.execute(statement).fetchall()
        # and the sandbox is still on afterwards
        with pytest.raises(duckdb.Error):
            con.execute("SELECT * FROM read_text('/etc/passwd')").fetchall()
    assert _snapshot(victim.root) == before


def test_the_import_script_would_have_deleted_every_row_without_the_sandbox(
    victim: Victim,
) -> None:
    """The IMPORT DATABASE attack is real: on an ordinary read-only connection it empties the
    store through the hard link (so the test above tests a guard, not a typo)."""
    con = duckdb.connect(str(victim.store.path), read_only=True)
    try:
        con.execute(f"IMPORT DATABASE '{victim.importdir}'")
    finally:
        con.close()
    assert len(victim.store.sql("SELECT * FROM recorded_calls")) == 0


def test_reads_and_views_work_in_the_sandbox(victim: Victim) -> None:
    store = victim.store
    assert store.sql("SELECT name, examples FROM datasets").rows == [("d", 3)]
    rows = store.sql(
        "SELECT json_extract_string(example, '$.messages[1].content') FROM examples"
    ).rows
    assert rows == [("a",), ("a",), ("a",)]
    assert store.sql("EXPLAIN SELECT * FROM calls").rows
    assert store.sql("PRAGMA version").rows
    assert store.sql("SELECT * FROM query('SELECT 42')").rows == [(42,)]


def test_the_sandbox_is_what_duckdb_reports(victim: Victim) -> None:
    with connect(victim.store.path, read_only=True, sandbox=True) as con:
        found = dict(con.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert {
        name: found[name]
        for name in (
            "access_mode",
            "enable_external_access",
            "lock_configuration",
            "autoload_known_extensions",
            "autoinstall_known_extensions",
            "allow_community_extensions",
            "allow_unsigned_extensions",
            "allow_persistent_secrets",
            "temp_directory",
        )
    } == {
        "access_mode": "read_only",
        "enable_external_access": "false",
        "lock_configuration": "true",
        "autoload_known_extensions": "false",
        "autoinstall_known_extensions": "false",
        "allow_community_extensions": "false",
        "allow_unsigned_extensions": "false",
        "allow_persistent_secrets": "false",
        "temp_directory": "",
    }
    # only the store and its WAL may be opened
    assert all(
        path.startswith(str(victim.store.path))
        for path in found["allowed_paths"].strip("[]").split(", ")
    )
    assert found["allowed_directories"] == "[]"


def test_a_path_given_as_a_parameter_is_refused_too(victim: Victim) -> None:
    before = _snapshot(victim.root)
    for path in ("/etc/passwd", str(victim.beside), str(victim.link)):
        with pytest.raises(StoreError, match="reaches nothing but the store"):
            victim.store.sql("SELECT * FROM read_blob(?)", [path])
    with pytest.raises(StoreError, match="reaches nothing but the store"):
        victim.store.sql("SELECT * FROM read_csv(?, sep = ':')", ["/etc/passwd"])
    assert _snapshot(victim.root) == before


def test_one_statement_at_a_time(victim: Victim) -> None:
    with pytest.raises(StoreError, match="runs one statement, and this is 2"):
        victim.store.sql("SELECT 1; SELECT 2")


# --- property: statements from DuckDB's side-effecting grammar ---------------------------------

_PATHS = [
    "{out}",
    "{beside}",
    "{link}",
    "{store}",
    "{store}.wal",
    "{store}.tmp/x.csv",
    "{root}/new.duckdb",
    "{root}/exported",
    "{importdir}",
    "/etc/passwd",
    "relative.csv",
]
_SETTINGS = [
    "threads",
    "enable_external_access",
    "lock_configuration",
    "temp_directory",
    "profiling_output",
    "enable_profiling",
    "allowed_directories",
    "autoload_known_extensions",
    "secret_directory",
]
_SELECTS = [
    "SELECT * FROM recorded_calls",
    "SELECT 1",
    "SELECT * FROM read_text('{path}')",
    "SELECT * FROM read_csv_auto('{path}')",
    "SELECT * FROM read_parquet('{path}')",
    "SELECT * FROM read_blob('{path}')",
    "SELECT * FROM glob('{path}')",
    "SELECT * FROM query('SELECT 1')",
]
_STATEMENTS = [
    "{select}",
    "COPY recorded_calls TO '{path}'",
    "COPY ({select}) TO '{path}' (FORMAT {format})",
    "COPY recorded_calls FROM '{path}'",
    "COPY FROM DATABASE store TO other",
    "EXPORT DATABASE '{path}'",
    "IMPORT DATABASE '{path}'",
    "PRAGMA import_database('{path}')",
    "ATTACH '{path}' AS other",
    "ATTACH '{path}' AS other (READ_WRITE)",
    "ATTACH ':memory:' AS other",
    "DETACH finetuner",
    "USE system",
    "INSTALL {extension}",
    "FORCE INSTALL {extension}",
    "LOAD {extension}",
    "LOAD '{path}'",
    "SET {setting} = '{path}'",
    "SET GLOBAL {setting} = false",
    "RESET {setting}",
    "PRAGMA {setting} = '{path}'",
    "CALL enable_logging(storage = 'file', storage_path = '{path}')",
    "CALL force_checkpoint()",
    "CHECKPOINT",
    "VACUUM",
    "ANALYZE",
    "CREATE TABLE t AS {select}",
    "CREATE OR REPLACE VIEW calls AS SELECT 1 AS id",
    "CREATE OR REPLACE MACRO openai_text(v) AS 'forged'",
    "CREATE PERSISTENT SECRET s (TYPE http, BEARER_TOKEN 'x')",
    "INSERT INTO recorded_calls SELECT * FROM recorded_calls",
    "INSERT INTO feedback (call_id, kind) VALUES ('x', 'reject')",
    "UPDATE recorded_calls SET dataset = 'moved'",
    "DELETE FROM recorded_calls",
    "DROP TABLE recorded_calls",
    "DROP VIEW calls",
    "ALTER TABLE recorded_calls ADD COLUMN z INTEGER",
]
_WRAPPERS = [
    "{}",
    "EXPLAIN {}",
    "EXPLAIN ANALYZE {}",
    "WITH w AS (SELECT 1) {}",
    "SELECT * FROM ({})",
    "SELECT * FROM ({}) LIMIT 1",
    "SELECT (SELECT count(*) FROM ({}))",
    "{}; SELECT 1",
    "SELECT 1; {}",
    "/* a comment */ {}",
    "{} -- trailing",
]


@st.composite
def statements(draw: st.DrawFn) -> str:
    path = draw(st.sampled_from(_PATHS))
    select = draw(st.sampled_from(_SELECTS)).replace("{path}", path)
    statement = draw(st.sampled_from(_STATEMENTS))
    statement = (
        statement.replace("{select}", select)
        .replace("{path}", path)
        .replace("{format}", draw(st.sampled_from(["csv", "parquet", "json"])))
        .replace("{extension}", draw(st.sampled_from(["httpfs", "json", "spatial", "sqlite"])))
        .replace("{setting}", draw(st.sampled_from(_SETTINGS)))
    )
    for wrapper in draw(st.lists(st.sampled_from(_WRAPPERS), max_size=2)):
        statement = wrapper.replace("{}", statement)
    return statement


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(template=statements())
def test_no_statement_changes_anything_on_disk(victim: Victim, template: str) -> None:
    statement = victim.fill(template)
    before = _snapshot(victim.root)
    with contextlib.suppress(StoreError):  # refused, or a harmless read
        victim.store.sql(statement)
    with (
        connect(victim.store.path, read_only=True, sandbox=True) as con,
        contextlib.suppress(duckdb.Error),
    ):
        con.execute(statement).fetchall()
    assert _snapshot(victim.root) == before, statement
