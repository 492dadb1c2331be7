import pytest
from sqlalchemy import Column, MetaData, String, Table, select
from sqlalchemy.dialects import sqlite

from overt.engine.api.search import Condition, parse, where
from overt.engine.model.errors import InvalidInput

vms = Table("vms", MetaData(), Column("name", String), Column("status", String))
FIELDS = {"name": vms.c.name, "status": vms.c.status}


def sql(query: str, case_sensitive: bool = True) -> str:
    clause = where(query, FIELDS, case_sensitive=case_sensitive)
    stmt = select(vms).where(clause) if clause is not None else select(vms)
    return str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


def test_parse_conditions_and_joins() -> None:
    assert parse("name=web* and status=up") == (
        [Condition("name", "=", "web*"), Condition("status", "=", "up")], "and")
    assert parse("Vms: name = x") == ([Condition("name", "=", "x")], "and")
    assert parse("name=a or name=b")[1] == "or"
    assert parse("") == ([], "and")


def test_sql_of_searches() -> None:
    assert "vms.name = 'web1'" in sql("name=web1")
    assert "vms.name LIKE 'web%'" in sql("name=web*")
    assert "lower(vms.name) = 'web1'" in sql("name=WEB1", case_sensitive=False)
    assert "vms.status != 'up'" in sql("status!=up")


@pytest.mark.parametrize(
    ("query", "words"),
    [("colour=blue", "cannot search by 'colour'"), ("name", "cannot understand"),
     ("name=a and name=b or name=c", "not both"), ("name>x", "needs a number")],
)
def test_bad_searches_are_refused(query: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        where(query, FIELDS)
