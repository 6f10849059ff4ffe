"""The Arrow Flight SQL subset BI clients need for queries, on ``pyarrow.flight``, answering from a read-only engine.

Implemented: GetFlightInfo/GetSchema for ``CommandStatementQuery`` (ad-hoc SQL), the catalog commands
(``CommandGetCatalogs``, ``CommandGetDbSchemas``, ``CommandGetTables``, ``CommandGetTableTypes``) and a few
``CommandGetSqlInfo`` items (server name, versions, read-only), then DoGet of the returned ticket. Everything else
(prepared statements, transactions, DoAction, DoExchange) is refused with UNIMPLEMENTED, DoPut with
PERMISSION_DENIED. The few protobuf messages involved are decoded and encoded by the small codec below (their
field numbers are those of the Flight SQL ``FlightSql.proto``).

Authentication is a bearer token in the ``authorization`` header of every call (ADBC
``adbc.flight.sql.authorization_header``, JDBC ``token=``), checked in constant time; no token is ever logged.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.flight as flight

TYPE_URL_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."

# FlightSql.proto result schemas of the catalog commands
CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8()),
                               pa.field("db_schema_name", pa.utf8(), nullable=False)])
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])
TABLES_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8()),
                           pa.field("table_name", pa.utf8(), nullable=False),
                           pa.field("table_type", pa.utf8(), nullable=False)])
TABLES_WITH_SCHEMA = TABLES_SCHEMA.append(pa.field("table_schema", pa.binary(), nullable=False))
_SQL_INFO_VALUE = pa.dense_union([
    pa.field("string_value", pa.utf8()), pa.field("bool_value", pa.bool_()), pa.field("bigint_value", pa.int64()),
    pa.field("int32_bitmask", pa.int32()), pa.field("string_list", pa.list_(pa.utf8())),
    pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32())))])
SQL_INFO_SCHEMA = pa.schema([pa.field("info_name", pa.uint32(), nullable=False),
                             pa.field("value", _SQL_INFO_VALUE, nullable=False)])
# SqlInfo ids: FLIGHT_SQL_SERVER_NAME, _VERSION, _ARROW_VERSION (strings), FLIGHT_SQL_SERVER_READ_ONLY (bool)
SQL_INFO: dict[int, str | bool] = {0: "clinical-lakehouse Gold (DataFusion)", 1: "1", 2: pa.__version__, 3: True}


# --- protobuf wire format: only length-delimited and varint fields are produced; all wire types are skipped safely

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or oversized varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def decode(buf: bytes) -> dict[int, list[Any]]:
    """Field number -> values (``bytes`` for length-delimited fields, ``int`` for varints)."""
    fields: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
            if pos > len(buf):
                raise ValueError("truncated length-delimited field")
        elif wire in (1, 5):
            step = 8 if wire == 1 else 4
            value, pos = buf[pos:pos + step], pos + step
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


def encode(*fields: tuple[int, bytes | str]) -> bytes:
    out = bytearray()
    for number, value in fields:
        data = value.encode() if isinstance(value, str) else value
        out += _varint(number << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def pack_any(message: str, body: bytes) -> bytes:
    return encode((1, TYPE_URL_PREFIX + message), (2, body))


def unpack_any(buf: bytes) -> tuple[str, dict[int, list[Any]]]:
    """``google.protobuf.Any`` -> (Flight SQL message name, its decoded fields)."""
    try:
        outer = decode(buf)
        type_url = outer.get(1, [b""])[0].decode()
        body = decode(outer.get(2, [b""])[0])
    except (ValueError, UnicodeDecodeError) as exc:
        raise flight.FlightServerError(f"not a Flight SQL command ({exc})") from None
    if not type_url.startswith(TYPE_URL_PREFIX):
        raise NotImplementedError(f"unsupported command {type_url or '(none)'}: this server answers Flight SQL "
                                  "statement queries and catalog calls only")
    return type_url[len(TYPE_URL_PREFIX):], body


def _text(fields: dict[int, list[Any]], number: int) -> str | None:
    values = fields.get(number)
    return values[0].decode() if values else None


# --- the server

class ReadOnlyEngine(Protocol):
    """What the server asks of the query engine: a schema and a stream of batches for one SQL statement, and
    the tables it serves (``(catalog, schema, table, Arrow schema)``)."""

    def schema(self, sql: str) -> pa.Schema: ...

    def execute(self, sql: str) -> pa.RecordBatchReader: ...

    def tables(self) -> list[tuple[str, str, str, pa.Schema]]: ...


class TokenAuth(flight.ServerMiddlewareFactory):
    """Every call must carry ``authorization: Bearer <token>``; compared in constant time (as digests, so not even
    the length leaks)."""

    def __init__(self, token: str) -> None:
        self._expected = hashlib.sha256(f"Bearer {token}".encode()).digest()
        self.refused = 0
        self._lock = threading.Lock()

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> None:
        given = (headers.get("authorization") or [""])[0]
        given_bytes = given.encode() if isinstance(given, str) else bytes(given)
        if not hmac.compare_digest(hashlib.sha256(given_bytes).digest(), self._expected):
            with self._lock:
                self.refused += 1
            raise flight.FlightUnauthenticatedError("a valid bearer token is required (ADBC: "
                                                    "adbc.flight.sql.authorization_header; JDBC: token=)")
        return None


@dataclass
class Counters:
    """Calls answered and refused, and distinct client addresses, for the run log."""

    queries: int = 0
    refused: int = 0
    peers: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, peer: str, ok: bool) -> None:
        with self.lock:
            self.peers.add(peer.rsplit(":", 1)[0])  # "ipv4:127.0.0.1:53312" -> the host, not each socket
            if ok:
                self.queries += 1
            else:
                self.refused += 1


class FlightSqlService(flight.FlightServerBase):
    """Flight SQL over ``engine``; ``location`` is ``grpc://host:port`` or ``grpc+tls://host:port``."""

    def __init__(self, engine: ReadOnlyEngine, location: str, token: str | None = None,
                 tls: tuple[bytes, bytes] | None = None, catalog: str = "datafusion") -> None:
        self.auth = TokenAuth(token) if token else None
        certificates = [flight.CertKeyPair(cert=tls[0], key=tls[1])] if tls else None
        super().__init__(location, tls_certificates=certificates,
                         middleware={"auth": self.auth} if self.auth else None)
        self.engine = engine
        self.catalog = catalog
        self.counters = Counters()

    # GetFlightInfo / GetSchema: plan only; the ticket carries the command, DoGet runs it
    def get_flight_info(self, context: flight.ServerCallContext,
                        descriptor: flight.FlightDescriptor) -> flight.FlightInfo:
        schema, ticket = self._plan(context, descriptor)
        return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(ticket, [])], -1, -1)

    def get_schema(self, context: flight.ServerCallContext,
                   descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        return flight.SchemaResult(self._plan(context, descriptor)[0])

    def do_get(self, context: flight.ServerCallContext, ticket: flight.Ticket) -> flight.RecordBatchStream:
        name, fields = unpack_any(ticket.ticket)
        if name == "TicketStatementQuery":
            sql = _text(fields, 1) or ""
            return flight.RecordBatchStream(self._guard(context, lambda: self.engine.execute(sql), count=False))
        return flight.RecordBatchStream(self._catalog_call(name, fields)[1])

    def _plan(self, context: flight.ServerCallContext,
              descriptor: flight.FlightDescriptor) -> tuple[pa.Schema, bytes]:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            raise NotImplementedError("only Flight SQL commands are served (no path descriptors)")
        name, fields = unpack_any(descriptor.command)
        if name == "CommandStatementQuery":
            sql = _text(fields, 1) or ""
            schema = self._guard(context, lambda: self.engine.schema(sql))
            return schema, pack_any("TicketStatementQuery", encode((1, sql)))
        schema = self._catalog_call(name, fields)[0]
        return schema, descriptor.command  # the catalog command is its own ticket

    def _guard(self, context: flight.ServerCallContext, call: Callable[[], Any], count: bool = True) -> Any:
        """Run ``call``, counting a refusal, or a query when ``count`` (a query is planned once, run once)."""
        try:
            result = call()
        except Exception:
            self.counters.count(context.peer(), ok=False)
            raise
        if count:
            self.counters.count(context.peer(), ok=True)
        return result

    def _catalog_call(self, name: str, fields: dict[int, list[Any]]) -> tuple[pa.Schema, pa.Table]:
        tables = self.engine.tables()
        if name == "CommandGetCatalogs":
            return CATALOGS_SCHEMA, pa.table({"catalog_name": [self.catalog]}, CATALOGS_SCHEMA)
        if name == "CommandGetTableTypes":
            return TABLE_TYPES_SCHEMA, pa.table({"table_type": ["TABLE"]}, TABLE_TYPES_SCHEMA)
        if name == "CommandGetDbSchemas":
            wanted = _like(_text(fields, 2))
            schemas = sorted({s for c, s, _, _ in tables if _catalog_matches(c, _text(fields, 1)) and wanted(s)})
            return DB_SCHEMAS_SCHEMA, pa.table({"catalog_name": [self.catalog] * len(schemas),
                                                "db_schema_name": schemas}, DB_SCHEMAS_SCHEMA)
        if name == "CommandGetTables":
            schema_ok, table_ok = _like(_text(fields, 2)), _like(_text(fields, 3))
            types = {t.decode() for t in fields.get(4, [])}
            rows = [(c, s, t, sch) for c, s, t, sch in tables
                    if _catalog_matches(c, _text(fields, 1)) and schema_ok(s) and table_ok(t)
                    and (not types or "TABLE" in types)]
            data: dict[str, list[Any]] = {"catalog_name": [r[0] for r in rows], "db_schema_name": [r[1] for r in rows],
                                          "table_name": [r[2] for r in rows], "table_type": ["TABLE"] * len(rows)}
            if fields.get(5, [0])[0]:
                data["table_schema"] = [r[3].serialize().to_pybytes() for r in rows]
                return TABLES_WITH_SCHEMA, pa.table(data, TABLES_WITH_SCHEMA)
            return TABLES_SCHEMA, pa.table(data, TABLES_SCHEMA)
        if name == "CommandGetSqlInfo":
            return SQL_INFO_SCHEMA, _sql_info(_uint32s(fields.get(1, [])))
        raise NotImplementedError(f"{name} is not supported: this server answers ad-hoc SQL queries "
                                  "(CommandStatementQuery) and catalog listings only; it is read-only")

    def do_put(self, context: flight.ServerCallContext, descriptor: flight.FlightDescriptor,
               reader: flight.MetadataRecordBatchReader, writer: flight.FlightMetadataWriter) -> None:
        raise flight.FlightUnauthorizedError("this server is read-only: DoPut (updates, ingestion) is refused")

    def do_action(self, context: flight.ServerCallContext, action: flight.Action) -> Iterator[bytes]:
        raise NotImplementedError(f"action {action.type!r} is not supported (no prepared statements, transactions "
                                  "or sessions): send ad-hoc SQL")

    def list_flights(self, context: flight.ServerCallContext, criteria: bytes) -> Iterator[flight.FlightInfo]:
        return iter(())


def _uint32s(values: list[Any]) -> list[int]:
    """A repeated uint32 field: packed (one length-delimited run of varints) or one varint per value."""
    out: list[int] = []
    for value in values:
        if isinstance(value, int):
            out.append(value)
            continue
        pos = 0
        while pos < len(value):
            number, pos = _read_varint(value, pos)
            out.append(number)
    return out


def _sql_info(wanted: list[int]) -> pa.Table:
    ids = [i for i in (wanted or list(SQL_INFO)) if i in SQL_INFO]
    strings = [SQL_INFO[i] for i in ids if isinstance(SQL_INFO[i], str)]
    bools = [SQL_INFO[i] for i in ids if isinstance(SQL_INFO[i], bool)]
    kinds = [1 if isinstance(SQL_INFO[i], bool) else 0 for i in ids]
    offsets, seen = [], [0, 0]
    for kind in kinds:
        offsets.append(seen[kind])
        seen[kind] += 1
    children = [pa.array(strings, pa.utf8()), pa.array(bools, pa.bool_())] + [
        pa.array([], f.type) for f in list(_SQL_INFO_VALUE)[2:]]
    value = pa.UnionArray.from_dense(pa.array(kinds, pa.int8()), pa.array(offsets, pa.int32()), children,
                                     [f.name for f in _SQL_INFO_VALUE], list(range(len(children))))
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), value], schema=SQL_INFO_SCHEMA)


def _catalog_matches(catalog: str, wanted: str | None) -> bool:
    return wanted is None or wanted == catalog


def _like(pattern: str | None) -> Callable[[str], bool]:
    """A Flight SQL filter pattern (SQL LIKE: ``%`` any run, ``_`` one character) as a predicate."""
    if pattern is None:
        return lambda _: True
    regex = re.compile("".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern),
                       re.DOTALL)
    return lambda value: regex.fullmatch(value) is not None
