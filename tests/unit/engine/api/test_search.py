import uuid

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, Uuid, select
from sqlalchemy.dialects import sqlite

from overt.engine.api.search import PAGE_SIZE, Condition, Query, Related, apply, parse, where
from overt.engine.model.errors import InvalidInput

meta = MetaData()
clusters = Table("clusters", meta, Column("id", Integer, primary_key=True),
                 Column("name", String))
vms = Table("vms", meta, Column("id", Uuid), Column("name", String), Column("status", String),
            Column("memory", Integer), Column("cluster_id", ForeignKey("clusters.id")))
other = clusters.alias("c2")
FIELDS = {"name": vms.c.name, "status": vms.c.status, "id": vms.c.id, "memory": vms.c.memory,
          "cluster": Related(other.c.name, select(other.c.id).where(
              other.c.id == vms.c.cluster_id))}


def sql(query: str, case_sensitive: bool = True, limit: int | None = None) -> str:
    stmt = apply(select(vms).order_by(vms.c.name), query, FIELDS,
                 case_sensitive=case_sensitive, limit=limit)
    return str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


def test_parse_conditions_joins_sorting_and_pages() -> None:
    assert parse("name=web* and status=up") == Query(
        [[Condition("name", "=", "web*"), Condition("status", "=", "up")]])
    assert parse("Vms: name = x") == Query([[Condition("name", "=", "x")]])
    assert parse("name=a or name=b").groups == [[Condition("name", "=", "a")],
                                                [Condition("name", "=", "b")]]
    assert parse("name=a and status=up or name=b").groups == [
        [Condition("name", "=", "a"), Condition("status", "=", "up")],
        [Condition("name", "=", "b")]]
    assert parse('name="my vm" status=up').groups == [
        [Condition("name", "=", "my vm"), Condition("status", "=", "up")]]
    assert parse("page 2") == Query(page=2)
    assert parse("status=up sortby name desc page 3") == Query(
        [[Condition("status", "=", "up")]], sortby="name", descending=True, page=3)
    assert parse("SortBy memory ASC") == Query(sortby="memory")
    assert parse("") == Query()


def test_sql_of_searches() -> None:
    assert "vms.name = 'web1'" in sql("name=web1")
    assert "vms.name LIKE 'web%'" in sql("name=web*")
    assert "lower(vms.name) = 'web1'" in sql("name=WEB1", case_sensitive=False)
    assert "vms.status != 'up'" in sql("status!=up")
    assert "vms.name = 'a' AND vms.status = 'up' OR vms.name = 'b'" in sql(
        "name=a and status=up or name=b")
    assert "ORDER BY vms.memory DESC" in sql("sortby memory desc")
    assert sql("page 3").endswith(f"LIMIT {PAGE_SIZE} OFFSET {2 * PAGE_SIZE}")
    assert sql("page 2", limit=5).endswith("LIMIT 5 OFFSET 5")
    assert sql("", limit=5).endswith("LIMIT 5 OFFSET 0")


def test_other_objects_fields_are_correlated_subqueries() -> None:
    text = sql("cluster=Default")
    assert "EXISTS (SELECT c2.id" in text and "c2.id = vms.cluster_id" in text
    assert "c2.name = 'Default'" in text
    assert "NOT (EXISTS" in sql("cluster!=Default")


def test_ids_match_whole_ids_only() -> None:
    vm_id = uuid.uuid4()
    clause = where(f"id={vm_id}", FIELDS)
    assert clause is not None and clause.right.value == vm_id  # type: ignore[attr-defined]
    assert "0 = 1" in sql("id=nonsense") or "false" in sql("id=nonsense").lower()


@pytest.mark.parametrize(
    ("query", "words"),
    [("colour=blue", "cannot search by 'colour'; searchable fields are cluster, id, memory"),
     ("name", "cannot understand"), ("name=", "needs a value"), ("memory>x", "needs a number"),
     ("page 0", "page number"), ("page", "page number"), ("sortby", "needs a field"),
     ("sortby colour", "cannot sort by 'colour'"), ("or name=a", "needs a condition"),
     ("name=a or", "needs a condition"), ("id=abc*", "whole id")],
)
def test_bad_searches_are_refused(query: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        sql(query)
