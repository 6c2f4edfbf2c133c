"""The engine's per-task statements are prepared once per session, and recover when the
session loses them."""

import pytest
from django.db import connection, transaction

from runs.prepared import Statement

pytestmark = pytest.mark.django_db(transaction=True)

ADD = Statement("test_add", "SELECT %(a)s::integer + %(b)s::integer, %(a)s::integer")


def run(statement: Statement, **params):
    with connection.cursor() as cursor:
        statement.execute(cursor, params)
        return cursor.fetchone()


def prepared_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def test_named_parameters_become_positional_once_each():
    assert ADD.prepared_sql == "SELECT $1::integer + $2::integer, $1::integer"
    assert run(ADD, a=2, b=3) == (5, 2)
    assert run(ADD, b=10, a=1) == (11, 1)
    assert ADD.name in prepared_names()


def test_a_session_that_lost_its_statements_prepares_them_again():
    assert run(ADD, a=1, b=1) == (2, 1)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    assert run(ADD, a=4, b=4) == (8, 4)
    assert ADD.name in prepared_names()


def test_a_new_session_prepares_them_again():
    assert run(ADD, a=1, b=2) == (3, 1)
    connection.close()
    assert run(ADD, a=5, b=6) == (11, 5)


def test_statement_prepared_by_an_unknown_earlier_caller_is_reused():
    assert run(ADD, a=1, b=2) == (3, 1)
    connection.__dict__["flowforge_prepared"] = set()
    assert run(ADD, a=7, b=1) == (8, 7)


def test_inside_a_transaction_it_runs_as_plain_text():
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    with transaction.atomic():
        assert run(ADD, a=2, b=2) == (4, 2)
        transaction.set_rollback(True)
    assert ADD.name not in prepared_names()
