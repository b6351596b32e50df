"""The desk's own database: alerts, the alerts-topic offsets, the audit trail and sign-in sessions.

SQLite or PostgreSQL (see :mod:`alert_desk.database`), with the same SQL and the same logic.
The one rule that matters: a batch of alerts and the offsets after it are written in ONE
transaction, so after any stop (even a kill) the desk resumes exactly after the last alert it
kept: nothing lost, nothing read twice. Alerts are keyed by ``alert_id``, so a resent alert
is kept once. Every state change is written in the same transaction as its audit entry, and
checks the alert's status inside that transaction (its row locked where the database has
row locks), so two operators can never both win the same change.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterator, Sequence

from alert_desk.alerts import Alert, RefusedAlert
from alert_desk.database import Connection, Dialect, Parameters, dialect_for
from transforms.contract import MaintenanceAlert, encode_message, format_timestamp

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
STATUSES = (OPEN, ACKNOWLEDGED, RESOLVED)
SENT = "sent"  # a maintenance alert's drone was sent to maintenance
MAINTENANCE_STATUSES = (OPEN, SENT)

# One schema for both databases: the column types both understand alike (SQLite reads BIGINT
# as INTEGER and DOUBLE PRECISION as REAL), the two they spell differently filled in by the
# dialect, and "offset" quoted because it is a reserved word in PostgreSQL. Kafka offsets are
# 64-bit. An existing SQLite file keeps the schema it was created with: the same columns.
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    drone_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    latitude DOUBLE PRECISION NOT NULL,
    longitude DOUBLE PRECISION NOT NULL,
    borough TEXT,
    image_id TEXT NOT NULL,
    message_json TEXT NOT NULL,
    source_partition BIGINT NOT NULL,
    source_offset BIGINT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    resolved_by TEXT,
    resolved_at TEXT,
    resolved_code INTEGER,
    correction_message_id TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_status ON alerts (status, raised_at);
CREATE INDEX IF NOT EXISTS alerts_by_borough ON alerts (borough, status, raised_at);
CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (raised_at);
CREATE INDEX IF NOT EXISTS alerts_by_image ON alerts (image_id);
CREATE TABLE IF NOT EXISTS maintenance_alerts (
    alert_id TEXT PRIMARY KEY,
    drone_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    scored_at TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    failure_risk DOUBLE PRECISION NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'sent')),
    sent_by TEXT,
    sent_at TEXT
);
CREATE INDEX IF NOT EXISTS maintenance_by_status ON maintenance_alerts (status, raised_at);
CREATE TABLE IF NOT EXISTS consumed_offsets (
    topic TEXT NOT NULL,
    partition BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS refused_alerts (
    topic TEXT NOT NULL,
    partition BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    raw {bytes} NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE IF NOT EXISTS audit (
    id {serial_key},
    at TEXT NOT NULL,
    operator TEXT NOT NULL,
    action TEXT NOT NULL,
    alert_id TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_by_alert ON audit (alert_id, id);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
)
"""

_ALERT_COLUMNS = (
    "alert_id, message_id, drone_id, observed_at, raised_at, received_at, latitude, longitude, borough, "
    "image_id, status, acknowledged_by, acknowledged_at, resolved_by, resolved_at, resolved_code, "
    "correction_message_id"
)
_INSERT_ALERT = (
    "INSERT INTO alerts (alert_id, message_id, drone_id, observed_at, raised_at, received_at, latitude, longitude, "
    "borough, image_id, message_json, source_partition, source_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (alert_id) DO NOTHING"
)
_INSERT_REFUSED = (
    'INSERT INTO refused_alerts (topic, partition, "offset", reason, detail, raw, received_at) '
    'VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (topic, partition, "offset") DO NOTHING'
)
# Offsets only move forward, whatever order two writers commit in.
_KEEP_OFFSET = (
    "INSERT INTO consumed_offsets (topic, partition, next_offset) VALUES (?, ?, ?) "
    "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset "
    "WHERE excluded.next_offset > consumed_offsets.next_offset"
)
_MAINTENANCE_COLUMNS = (
    "alert_id, drone_id, message_id, scored_at, raised_at, received_at, failure_risk, threshold, status, sent_by, sent_at"
)
_INSERT_MAINTENANCE = (
    "INSERT INTO maintenance_alerts (alert_id, drone_id, message_id, scored_at, raised_at, received_at, failure_risk, "
    "threshold) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id) DO NOTHING"
)
# Newest first; within one raised_at, the later record of the topic first (as stored).
_NEWEST_FIRST = "ORDER BY raised_at DESC, source_partition DESC, source_offset DESC"

Row = dict[str, Any]


class NotFound(LookupError):
    """No alert has that id; the message is meant for the operator as is."""


class Conflict(Exception):
    """The alert is not in a state that allows the change; the message says why."""


@dataclass(frozen=True)
class Transition:
    """A state change that happened: the alert after it and the status it left."""

    alert: Row
    previous_status: str


def now_text() -> str:
    return format_timestamp(datetime.now(timezone.utc))


class _Session:
    """One connection that speaks the dialect's parameter style, so the store's SQL is written once."""

    def __init__(self, connection: Connection, dialect: Dialect) -> None:
        self.connection = connection
        self.dialect = dialect

    def run(self, statement: str, parameters: Parameters = ()) -> int:
        """Execute one statement; how many rows it changed."""
        return self.connection.execute(self.dialect.sql(statement), parameters).rowcount

    def run_many(self, statement: str, rows: Sequence[Parameters]) -> None:
        if rows:
            self.connection.cursor().executemany(self.dialect.sql(statement), rows)

    def one(self, statement: str, parameters: Parameters = ()) -> Row | None:
        return self.connection.execute(self.dialect.sql(statement), parameters).fetchone()

    def all(self, statement: str, parameters: Parameters = ()) -> list[Row]:
        return self.connection.execute(self.dialect.sql(statement), parameters).fetchall()


class Store:
    """The desk's database, shared by the consumer thread and the web workers (one connection per thread)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._local = threading.local()
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        with self._transaction() as session:
            for statement in SCHEMA.format(**dialect.column_types).split(";"):
                session.run(statement)

    @classmethod
    def open(cls, url: str) -> Store:
        """The store of a ``--db`` URL; ValueError for a URL of neither kind, DatabaseUnavailable when it
        cannot be reached."""
        return cls(dialect_for(url))

    def _session(self) -> _Session:
        """This thread's connection; a new one if the last was broken (say, the server restarted)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and self.dialect.is_broken(connection):
            self._forget(connection)
            connection = None
        if connection is None:
            connection = self.dialect.connect()
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return _Session(connection, self.dialect)

    def _forget(self, connection: Connection) -> None:
        with suppress(Exception):  # it is being thrown away because it no longer works
            connection.close()
        with self._connections_lock:
            if connection in self._connections:
                self._connections.remove(connection)
        self._local.connection = None

    @contextmanager
    def _transaction(self) -> Iterator[_Session]:
        """A write transaction: all of it is kept, or none of it."""
        session = self._session()
        session.run(self.dialect.begin)
        try:
            yield session
        except BaseException:
            self._roll_back(session)
            raise
        session.run("COMMIT")

    def _roll_back(self, session: _Session) -> None:
        """Undo the open transaction; a connection that cannot even do that is replaced next time."""
        try:
            session.run("ROLLBACK")
        except Exception:  # noqa: BLE001 - the caller re-raises the error that made us roll back
            self._forget(session.connection)

    def close(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    # The alerts topic: batches in, offsets kept with them.

    def next_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset to read next: one past the last record kept."""
        rows = self._session().all("SELECT partition, next_offset FROM consumed_offsets WHERE topic = ?", (topic,))
        return {row["partition"]: row["next_offset"] for row in rows}

    def ingest(
        self,
        topic: str,
        alerts: Sequence[Alert],
        refused: Sequence[RefusedAlert],
        next_offsets: dict[int, int],
        maintenance: Sequence[MaintenanceAlert] = (),
    ) -> list[Row]:
        """Keep a consumed batch (violation and maintenance alerts, refused records) and its offsets atomically;
        return the violation alerts that were new. A maintenance alert sent twice is kept once, by its id."""
        received_at = now_text()
        with self._transaction() as session:
            new_ids = [alert.alert_id for alert in alerts if session.run(_INSERT_ALERT, _alert_row(alert, received_at))]
            session.run_many(_INSERT_MAINTENANCE, [_maintenance_row(alert, received_at) for alert in maintenance])
            session.run_many(
                _INSERT_REFUSED,
                [(topic, item.source_partition, item.source_offset, item.reason, item.detail, item.raw, received_at) for item in refused],
            )
            session.run_many(_KEEP_OFFSET, [(topic, partition, offset) for partition, offset in next_offsets.items()])
            return _views(session, new_ids)

    # Reading.

    def get(self, alert_id: str) -> Row | None:
        views = _views(self._session(), [alert_id])
        return views[0] if views else None

    def observed_at_of_image(self, image_id: str) -> str | None:
        """When the drone took the photo ``image_id`` of an alert; None when no alert has that photo."""
        row = self._session().one("SELECT observed_at FROM alerts WHERE image_id = ? LIMIT 1", (image_id,))
        return row["observed_at"] if row else None

    def message_json(self, alert_id: str) -> bytes | None:
        row = self._session().one("SELECT message_json FROM alerts WHERE alert_id = ?", (alert_id,))
        return row["message_json"].encode("utf-8") if row else None

    def list_alerts(
        self, statuses: Sequence[str], borough: str | None, limit: int, unknown_borough: bool = False, offset: int = 0
    ) -> tuple[list[Row], int]:
        """Newest first, filtered by status and borough, ``limit`` of them after skipping ``offset``; also
        how many match in all. The order has tie-breakers, so consecutive pages neither overlap nor skip."""
        where, parameters = [f"status IN ({', '.join('?' * len(statuses))})"], list(statuses)
        if unknown_borough:
            where.append("borough IS NULL")
        elif borough is not None:
            where.append("borough = ?")
            parameters.append(borough)
        clause = " AND ".join(where)
        session = self._session()
        total = session.one(f"SELECT count(*) AS n FROM alerts WHERE {clause}", parameters)
        rows = session.all(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {clause} {_NEWEST_FIRST} LIMIT ? OFFSET ?",
            [*parameters, limit, offset],
        )
        return rows, total["n"] if total else 0

    def counts(self) -> dict[str, int]:
        rows = self._session().all("SELECT status, count(*) AS n FROM alerts GROUP BY status")
        found = {row["status"]: row["n"] for row in rows}
        return {status: found.get(status, 0) for status in STATUSES}

    def refused_count(self) -> int:
        row = self._session().one("SELECT count(*) AS n FROM refused_alerts")
        return row["n"] if row else 0

    def audit_log(self, alert_id: str | None, limit: int) -> list[Row]:
        columns = "SELECT id, at, operator, action, alert_id, detail FROM audit"
        if alert_id is None:
            return self._session().all(f"{columns} ORDER BY id DESC LIMIT ?", (limit,))
        return self._session().all(f"{columns} WHERE alert_id = ? ORDER BY id DESC LIMIT ?", (alert_id, limit))

    # State changes, each with its audit entry.

    def acknowledge(self, alert_id: str, operator: str) -> Transition:
        """open → acknowledged; anything else is a :class:`Conflict` that says why."""
        at = now_text()
        with self._transaction() as session:
            before = self._existing(session, alert_id, lock=True)
            if before["status"] == ACKNOWLEDGED:
                raise Conflict(f"alert {alert_id} was already acknowledged by {before['acknowledged_by']} at {before['acknowledged_at']}")
            if before["status"] == RESOLVED:
                raise Conflict(f"alert {alert_id} is stale: {_resolution(before)}; there is nothing to acknowledge")
            session.run(
                "UPDATE alerts SET status = ?, acknowledged_by = ?, acknowledged_at = ? WHERE alert_id = ?",
                (ACKNOWLEDGED, operator, at, alert_id),
            )
            _audit(session, at, operator, "acknowledge", alert_id, "")
            return Transition(_views(session, [alert_id])[0], before["status"])

    def check_resolvable(self, alert_id: str) -> Row:
        """The alert if it may still be resolved; :class:`NotFound` or :class:`Conflict` otherwise."""
        before = self._existing(self._session(), alert_id, lock=False)
        if before["status"] == RESOLVED:
            raise Conflict(f"alert {alert_id} {_resolution(before)}; it cannot be resolved twice")
        return before

    def resolve(self, alert_id: str, operator: str, code: int, correction_message_id: str) -> Transition:
        """open/acknowledged → resolved, once the correction is on the messages topic."""
        at = now_text()
        with self._transaction() as session:
            before = self._existing(session, alert_id, lock=True)
            if before["status"] == RESOLVED:
                raise Conflict(f"alert {alert_id} {_resolution(before)}; it cannot be resolved twice")
            session.run(
                "UPDATE alerts SET status = ?, resolved_by = ?, resolved_at = ?, resolved_code = ?, "
                "correction_message_id = ? WHERE alert_id = ?",
                (RESOLVED, operator, at, code, correction_message_id, alert_id),
            )
            _audit(session, at, operator, "resolve", alert_id, f"violation_code={code} correction={correction_message_id}")
            return Transition(_views(session, [alert_id])[0], before["status"])

    # Maintenance alerts: listed apart from the violations' alerts, and sent to maintenance once.

    def list_maintenance(self, statuses: Sequence[str], limit: int) -> list[Row]:
        """Newest first, by status."""
        return self._session().all(
            f"SELECT {_MAINTENANCE_COLUMNS} FROM maintenance_alerts WHERE status IN ({', '.join('?' * len(statuses))}) "
            "ORDER BY raised_at DESC, alert_id LIMIT ?",
            [*statuses, limit],
        )

    def get_maintenance(self, alert_id: str) -> Row | None:
        return self._session().one(f"SELECT {_MAINTENANCE_COLUMNS} FROM maintenance_alerts WHERE alert_id = ?", (alert_id,))

    def send_to_maintenance(self, alert_id: str, operator: str) -> Row:
        """open → sent, with its audit entry; :class:`NotFound`, or :class:`Conflict` when it was sent already."""
        at = now_text()
        with self._transaction() as session:
            before = session.one(f"SELECT * FROM maintenance_alerts WHERE alert_id = ?{self.dialect.lock_rows}", (alert_id,))
            if before is None:
                raise NotFound(f"no maintenance alert with id {alert_id}")
            if before["status"] == SENT:
                raise Conflict(f"drone {before['drone_id']} was sent to maintenance by {before['sent_by']} at {before['sent_at']}")
            session.run(
                "UPDATE maintenance_alerts SET status = ?, sent_by = ?, sent_at = ? WHERE alert_id = ?", (SENT, operator, at, alert_id)
            )
            _audit(session, at, operator, "send_to_maintenance", alert_id, f"drone={before['drone_id']}")
            row = session.one(f"SELECT {_MAINTENANCE_COLUMNS} FROM maintenance_alerts WHERE alert_id = ?", (alert_id,))
            assert row is not None  # updated within this transaction
            return row

    def record(self, operator: str, action: str, detail: str = "") -> None:
        """An audit entry not tied to an alert (signing in and out)."""
        with self._transaction() as session:
            _audit(session, now_text(), operator, action, None, detail)

    # Browser sessions, kept by the hash of their cookie.

    def create_session(self, token_hash: str, operator: str, expires_at: datetime) -> None:
        at = now_text()
        with self._transaction() as session:
            session.run("DELETE FROM sessions WHERE expires_at < ?", (at,))
            session.run(
                "INSERT INTO sessions (token_hash, operator, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash, operator, at, format_timestamp(expires_at)),
            )
            _audit(session, at, operator, "sign_in", None, "browser session")

    def session_operator(self, token_hash: str) -> str | None:
        row = self._session().one("SELECT operator FROM sessions WHERE token_hash = ? AND expires_at > ?", (token_hash, now_text()))
        return row["operator"] if row else None

    def end_session(self, token_hash: str) -> None:
        with self._transaction() as session:
            row = session.one("SELECT operator FROM sessions WHERE token_hash = ?", (token_hash,))
            if row:
                session.run("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
                _audit(session, now_text(), row["operator"], "sign_out", None, "browser session")

    def _existing(self, session: _Session, alert_id: str, lock: bool) -> Row:
        """The alert's row; inside a state change, locked until the transaction ends."""
        suffix = self.dialect.lock_rows if lock else ""
        row = session.one(f"SELECT * FROM alerts WHERE alert_id = ?{suffix}", (alert_id,))
        if row is None:
            raise NotFound(f"no alert with id {alert_id}")
        return row


def _views(session: _Session, alert_ids: Sequence[str]) -> list[Row]:
    views = []
    for alert_id in alert_ids:
        row = session.one(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,))
        if row is not None:
            views.append(row)
    return views


def _audit(session: _Session, at: str, operator: str, action: str, alert_id: str | None, detail: str) -> None:
    session.run(
        "INSERT INTO audit (at, operator, action, alert_id, detail) VALUES (?, ?, ?, ?, ?)",
        (at, operator, action, alert_id, detail),
    )


def _alert_row(alert: Alert, received_at: str) -> tuple[Any, ...]:
    message = alert.message
    return (
        alert.alert_id,
        message.message_id,
        message.drone_id,
        format_timestamp(message.timestamp),
        format_timestamp(alert.raised_at),
        received_at,
        message.latitude,
        message.longitude,
        alert.borough,
        message.image_id,
        encode_message(message).decode("utf-8"),
        alert.source_partition,
        alert.source_offset,
    )


def _maintenance_row(alert: MaintenanceAlert, received_at: str) -> tuple[Any, ...]:
    return (
        alert.alert_id,
        alert.drone_id,
        alert.message_id,
        format_timestamp(alert.scored_at),
        format_timestamp(alert.raised_at),
        received_at,
        alert.failure_risk,
        alert.threshold,
    )


def _resolution(row: Row) -> str:
    return f"was resolved by {row['resolved_by']} at {row['resolved_at']} as code {row['resolved_code']}"
