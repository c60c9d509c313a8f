"""The shared row mapper: a record written and read back through a real table is the same."""

from dataclasses import dataclass, field

from mistudio.store.db import Store
from mistudio.store.rows import RowMapper


@dataclass
class Thing:
    id: str
    name: str = ""
    linked: bool = False
    size: int | None = None
    settings: dict = field(default_factory=dict)
    tags: list = field(default_factory=list)
    result: dict | None = None
    path: str = ""  # derived, not stored


MAPPER = RowMapper(Thing, skip=("path",))


def test_round_trip_through_sqlite(tmp_path):
    store = Store(tmp_path / "t.db")
    table = store.db["things"]
    rec = Thing("t1", "one", True, 7, {"b": 1, "a": [1, 2]}, ["x"], {"ok": True})
    table.insert(MAPPER.to_row(rec), pk="id")
    row = next(table.rows_where("id = ?", ["t1"]))
    assert row["linked"] == 1 and row["settings"] == '{"b": 1, "a": [1, 2]}'
    assert "path" not in row
    back = MAPPER.from_row(row, path="/somewhere")
    assert back == Thing("t1", "one", True, 7, {"b": 1, "a": [1, 2]}, ["x"], {"ok": True},
                         "/somewhere")
    store.close()


def test_nulls_read_as_defaults_and_unknown_columns_are_dropped():
    row = {"id": "t2", "name": None, "linked": 0, "size": None, "settings": None, "tags": "",
           "result": None, "a_column_from_a_newer_schema": 5}
    assert MAPPER.from_row(row) == Thing("t2", "", False, None, {}, [], None)


def test_partial_updates_encode_only_what_is_given():
    assert MAPPER.encode({"settings": {"z": 1, "a": 2}, "linked": True}) == \
        {"settings": '{"z": 1, "a": 2}', "linked": 1}
    assert RowMapper(Thing, sort_keys=True).encode({"settings": {"z": 1, "a": 2}}) == \
        {"settings": '{"a": 2, "z": 1}'}
    assert MAPPER.encode({"result": None, "size": 3}) == {"result": None, "size": 3}


def test_where_equal_filters_only_what_is_set():
    import sqlite3

    from mistudio.store.rows import where_equal

    db = sqlite3.connect(":memory:")
    db.execute("create table t (a text, n integer)")
    db.executemany("insert into t values (?, ?)", [("x", 0), ("x", 1), ("y", 0)])

    def count(**conditions):
        where, args = where_equal(**conditions)
        sql = "select count(*) from t" + (" where " + " and ".join(where) if where else "")
        return db.execute(sql, args).fetchone()[0]

    assert count() == 3 and count(a="", n=None) == 3  # unset filters filter nothing
    assert count(a="x") == 2 and count(n=0) == 2  # 0 is a value, not "unset"
    assert count(a="x", n=0) == 1
