"""The PostgreSQL protocol message by message: what a driver relies on but does not show."""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from tests.query.pgwire_support import PgApp, Wire, data_row, error_fields, pg  # noqa: F401 (the module's app)

RANGE5 = "SELECT id FROM range(5) AS r(id)"


@pytest.fixture
def wire(pg: PgApp) -> Iterator[Wire]:  # noqa: F811
    w = Wire(pg.port)
    messages = w.login(pg.user, pg.password, "prod")
    assert messages[-1] == (b"Z", b"I"), messages
    yield w
    w.close()


def kinds(messages: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(k for k, _ in messages)


def test_login_after_ssl_request_reports_the_session(pg: PgApp) -> None:  # noqa: F811
    w = Wire(pg.port)
    w.raw(struct.pack("!ii", 8, 80877103))
    assert w.recv_exact(1) == b"N"  # no TLS: the client goes on in clear
    messages = w.login(pg.user, pg.password, "prod")
    w.close()
    assert messages[0] == (b"R", struct.pack("!i", 0))
    status = dict(tuple(body.split(b"\0")[:2]) for kind, body in messages if kind == b"S")
    assert status[b"server_version"].startswith(b"15.0")
    assert status[b"server_encoding"] == status[b"client_encoding"] == b"UTF8"
    assert status[b"TimeZone"] == b"UTC" and status[b"DateStyle"] == b"ISO, MDY"
    assert status[b"integer_datetimes"] == b"on" and status[b"standard_conforming_strings"] == b"on"
    assert kinds(messages[-2:]) == b"KZ"


@pytest.mark.parametrize(
    ("password", "database", "sqlstate"),
    [("not-a-token", "prod", "28P01"), (None, "nosuchsandbox", "3D000")],
)
def test_failed_logins_give_their_sqlstate(pg: PgApp, password: str | None, database: str, sqlstate: str) -> None:  # noqa: F811
    w = Wire(pg.port)
    messages = w.login(pg.user, password or pg.password, database)
    w.close()
    kind, body = messages[-1]
    assert kind == b"E"
    fields = error_fields(body)
    assert (fields["S"], fields["C"]) == ("FATAL", sqlstate), fields


def test_a_newer_minor_protocol_version_is_negotiated_down(pg: PgApp) -> None:  # noqa: F811
    w = Wire(pg.port)
    w.startup(pg.user, "prod", version=(3 << 16) | 2)
    kind, body = w.recv()
    w.close()
    assert kind == b"v" and struct.unpack("!ii", body) == (0, 0)  # speaks 3.0, no option unknown


def test_execute_with_a_row_limit_suspends_the_portal(wire: Wire) -> None:
    wire.parse(RANGE5)
    wire.bind()
    for _ in range(3):
        wire.execute(max_rows=2)
    wire.sync()
    messages = wire.until(b"Z")
    assert kinds(messages) == b"12DDsDDsDCZ"
    assert [data_row(body) for kind, body in messages if kind == b"D"] == [["0"], ["1"], ["2"], ["3"], ["4"]]
    assert messages[-2] == (b"C", b"SELECT 1\0")


def test_after_an_error_messages_are_skipped_until_sync(wire: Wire) -> None:
    wire.parse("SELEC 1")
    wire.bind()
    wire.execute()
    wire.sync()
    messages = wire.until(b"Z")
    assert kinds(messages) == b"EZ"
    assert error_fields(messages[0][1])["C"] == "42601"
    wire.parse("SELECT 1")  # the connection goes on
    wire.bind()
    wire.execute()
    wire.sync()
    assert kinds(wire.until(b"Z")) == b"12DCZ"


def test_a_named_statement_is_described_and_bound_twice(wire: Wire) -> None:
    wire.parse("SELECT id FROM range(10) AS r(id) WHERE id >= $1", name="from", types=(20,))
    wire.describe(b"S", "from")
    wire.sync()
    messages = wire.until(b"Z")
    assert kinds(messages) == b"1tTZ"
    assert struct.unpack("!hi", messages[1][1]) == (1, 20)  # one parameter, int8
    for start in ("8", "9"):
        wire.bind((start,), name="from")
        wire.execute()
    wire.send(b"C", b"Sfrom\0")
    wire.sync()
    messages = wire.until(b"Z")
    assert [data_row(body) for kind, body in messages if kind == b"D"] == [["8"], ["9"], ["9"]]
    assert kinds(messages)[-2:] == b"3Z"


def test_several_statements_in_one_query_stop_at_the_first_error(wire: Wire) -> None:
    wire.send(b"Q", b"SELECT 1; SELECT 2\0")
    assert kinds(wire.until(b"Z")) == b"TDCTDCZ"
    wire.send(b"Q", b"SELECT 1; SELECT * FROM no_such_table; SELECT 3\0")
    assert kinds(wire.until(b"Z")) == b"TDCEZ"
    wire.send(b"Q", b" -- nothing\n;\0")
    assert kinds(wire.until(b"Z")) == b"IZ"


def test_ready_for_query_tracks_the_transaction_block(wire: Wire) -> None:
    wire.send(b"Q", b"BEGIN\0")
    assert wire.until(b"Z")[-1] == (b"Z", b"T")
    wire.send(b"Q", b"SELECT * FROM no_such_table\0")
    assert wire.until(b"Z")[-1] == (b"Z", b"E")
    wire.send(b"Q", b"SELECT 1\0")
    messages = wire.until(b"Z")
    assert error_fields(messages[0][1])["C"] == "25P02" and messages[-1] == (b"Z", b"E")
    wire.send(b"Q", b"COMMIT\0")  # a failed block ends in a rollback whatever the client says
    messages = wire.until(b"Z")
    assert messages == [(b"C", b"ROLLBACK\0"), (b"Z", b"I")]


def test_binary_format_is_refused_for_types_it_is_not_implemented_for(wire: Wire) -> None:
    wire.parse("SELECT INTERVAL 1 DAY AS d")
    wire.bind(results=1)
    wire.execute()
    wire.sync()
    messages = wire.until(b"Z")
    assert kinds(messages) == b"12EZ"
    fields = error_fields(messages[2][1])
    assert fields["C"] == "0A000" and "interval" in fields["M"]


def test_a_prepared_statement_holds_one_command(wire: Wire) -> None:
    wire.parse("SELECT 1; SELECT 2")
    wire.sync()
    messages = wire.until(b"Z")
    assert error_fields(messages[0][1])["C"] == "42601"


def test_an_unknown_message_ends_the_connection(wire: Wire) -> None:
    wire.send(b"~", b"")
    kind, body = wire.recv()
    assert kind == b"E" and error_fields(body)["S"] == "FATAL" and error_fields(body)["C"] == "08P01"
    with pytest.raises(ConnectionError):
        wire.recv()
