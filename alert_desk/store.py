"""The desk's own database: alerts, the alerts-topic offsets, the audit trail and sign-in sessions.

SQLite through the standard library. The one rule that matters: a batch of alerts and the
offsets after it are written in ONE transaction, so after any stop (even a kill) the desk
resumes exactly after the last alert it kept: nothing lost, nothing read twice. Alerts are
keyed by ``alert_id``, so a resent alert is kept once. Every state change is written in the
same transaction as its audit entry.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from alert_desk.alerts import Alert, RefusedAlert
from transforms.contract import encode_message, format_timestamp

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
STATUSES = (OPEN, ACKNOWLEDGED, RESOLVED)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    drone_id TEXT NOT NULL,
    observed_at TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    received_at TEXT NOT NULL,
    latitude REAL NOT NULL,
    longitude REAL NOT NULL,
    borough TEXT,
    image_id TEXT NOT NULL,
    message_json TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset INTEGER NOT NULL,
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
CREATE TABLE IF NOT EXISTS consumed_offsets (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS refused_alerts (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    raw BLOB NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (topic, partition, offset)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
);
"""

_ALERT_COLUMNS = (
    "alert_id, message_id, drone_id, observed_at, raised_at, received_at, latitude, longitude, borough, "
    "image_id, status, acknowledged_by, acknowledged_at, resolved_by, resolved_at, resolved_code, "
    "correction_message_id"
)


class NotFound(LookupError):
    """No alert has that id; the message is meant for the operator as is."""


class Conflict(Exception):
    """The alert is not in a state that allows the change; the message says why."""


@dataclass(frozen=True)
class Transition:
    """A state change that happened: the alert after it and the status it left."""

    alert: dict[str, Any]
    previous_status: str


def now_text() -> str:
    return format_timestamp(datetime.now(timezone.utc))


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db`` → the file's path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"--db must be a sqlite:/// URL with a file path, not {url!r}")
    return Path(url[len(prefix):])


class Store:
    """One SQLite file shared by the consumer thread and the web workers (one connection per thread)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._connection().executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA busy_timeout=10000")
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front, so it never fails half-way."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def close(self) -> None:
        with self._connections_lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
        self._local = threading.local()

    # The alerts topic: batches in, offsets kept with them.

    def next_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset to read next: one past the last record kept."""
        rows = self._connection().execute(
            "SELECT partition, next_offset FROM consumed_offsets WHERE topic = ?", (topic,)
        )
        return {row["partition"]: row["next_offset"] for row in rows}

    def ingest(
        self,
        topic: str,
        alerts: Sequence[Alert],
        refused: Sequence[RefusedAlert],
        next_offsets: dict[int, int],
    ) -> list[dict[str, Any]]:
        """Keep a consumed batch and its offsets atomically; return the alerts that were new."""
        received_at = now_text()
        new_ids: list[str] = []
        with self._transaction() as connection:
            for alert in alerts:
                inserted = connection.execute(
                    "INSERT OR IGNORE INTO alerts (alert_id, message_id, drone_id, observed_at, raised_at, "
                    "received_at, latitude, longitude, borough, image_id, message_json, source_partition, "
                    "source_offset) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _alert_row(alert, received_at),
                ).rowcount
                if inserted:
                    new_ids.append(alert.alert_id)
            connection.executemany(
                "INSERT OR IGNORE INTO refused_alerts VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (topic, item.source_partition, item.source_offset, item.reason, item.detail, item.raw, received_at)
                    for item in refused
                ],
            )
            connection.executemany(
                "INSERT INTO consumed_offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = max(next_offset, excluded.next_offset)",
                [(topic, partition, offset) for partition, offset in next_offsets.items()],
            )
            return self._views(connection, new_ids)

    # Reading.

    def get(self, alert_id: str) -> dict[str, Any] | None:
        views = self._views(self._connection(), [alert_id])
        return views[0] if views else None

    def message_json(self, alert_id: str) -> bytes | None:
        row = self._connection().execute("SELECT message_json FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        return row["message_json"].encode("utf-8") if row else None

    def list_alerts(
        self, statuses: Sequence[str], borough: str | None, limit: int, unknown_borough: bool = False
    ) -> tuple[list[dict[str, Any]], int]:
        """Newest first, filtered by status and borough; also how many match in all."""
        where, parameters = [f"status IN ({', '.join('?' * len(statuses))})"], list(statuses)
        if unknown_borough:
            where.append("borough IS NULL")
        elif borough is not None:
            where.append("borough = ?")
            parameters.append(borough)
        clause = " AND ".join(where)
        connection = self._connection()
        total = connection.execute(f"SELECT count(*) FROM alerts WHERE {clause}", parameters).fetchone()[0]
        rows = connection.execute(
            f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE {clause} ORDER BY raised_at DESC, rowid DESC LIMIT ?",
            [*parameters, limit],
        ).fetchall()
        return [dict(row) for row in rows], total

    def counts(self) -> dict[str, int]:
        rows = self._connection().execute("SELECT status, count(*) AS n FROM alerts GROUP BY status")
        found = {row["status"]: row["n"] for row in rows}
        return {status: found.get(status, 0) for status in STATUSES}

    def refused_count(self) -> int:
        return self._connection().execute("SELECT count(*) FROM refused_alerts").fetchone()[0]

    def audit_log(self, alert_id: str | None, limit: int) -> list[dict[str, Any]]:
        if alert_id is None:
            rows = self._connection().execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._connection().execute(
                "SELECT * FROM audit WHERE alert_id = ? ORDER BY id DESC LIMIT ?", (alert_id, limit)
            )
        return [dict(row) for row in rows]

    # State changes, each with its audit entry.

    def acknowledge(self, alert_id: str, operator: str) -> Transition:
        """open → acknowledged; anything else is a :class:`Conflict` that says why."""
        at = now_text()
        with self._transaction() as connection:
            before = self._existing(connection, alert_id)
            if before["status"] == ACKNOWLEDGED:
                raise Conflict(
                    f"alert {alert_id} was already acknowledged by {before['acknowledged_by']} "
                    f"at {before['acknowledged_at']}"
                )
            if before["status"] == RESOLVED:
                raise Conflict(f"alert {alert_id} is stale: {_resolution(before)}; there is nothing to acknowledge")
            connection.execute(
                "UPDATE alerts SET status = ?, acknowledged_by = ?, acknowledged_at = ? WHERE alert_id = ?",
                (ACKNOWLEDGED, operator, at, alert_id),
            )
            self._audit(connection, at, operator, "acknowledge", alert_id, "")
            return Transition(self._views(connection, [alert_id])[0], before["status"])

    def check_resolvable(self, alert_id: str) -> dict[str, Any]:
        """The alert if it may still be resolved; :class:`NotFound` or :class:`Conflict` otherwise."""
        before = self._existing(self._connection(), alert_id)
        if before["status"] == RESOLVED:
            raise Conflict(f"alert {alert_id} {_resolution(before)}; it cannot be resolved twice")
        return before

    def resolve(self, alert_id: str, operator: str, code: int, correction_message_id: str) -> Transition:
        """open/acknowledged → resolved, once the correction is on the messages topic."""
        at = now_text()
        with self._transaction() as connection:
            before = self._existing(connection, alert_id)
            if before["status"] == RESOLVED:
                raise Conflict(f"alert {alert_id} {_resolution(before)}; it cannot be resolved twice")
            connection.execute(
                "UPDATE alerts SET status = ?, resolved_by = ?, resolved_at = ?, resolved_code = ?, "
                "correction_message_id = ? WHERE alert_id = ?",
                (RESOLVED, operator, at, code, correction_message_id, alert_id),
            )
            self._audit(
                connection, at, operator, "resolve", alert_id, f"violation_code={code} correction={correction_message_id}"
            )
            return Transition(self._views(connection, [alert_id])[0], before["status"])

    def record(self, operator: str, action: str, detail: str = "") -> None:
        """An audit entry not tied to an alert (signing in and out)."""
        with self._transaction() as connection:
            self._audit(connection, now_text(), operator, action, None, detail)

    # Browser sessions, kept by the hash of their cookie.

    def create_session(self, token_hash: str, operator: str, expires_at: datetime) -> None:
        at = now_text()
        with self._transaction() as connection:
            connection.execute("DELETE FROM sessions WHERE expires_at < ?", (at,))
            connection.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?)", (token_hash, operator, at, format_timestamp(expires_at))
            )
            self._audit(connection, at, operator, "sign_in", None, "browser session")

    def session_operator(self, token_hash: str) -> str | None:
        row = self._connection().execute(
            "SELECT operator FROM sessions WHERE token_hash = ? AND expires_at > ?", (token_hash, now_text())
        ).fetchone()
        return row["operator"] if row else None

    def end_session(self, token_hash: str) -> None:
        with self._transaction() as connection:
            row = connection.execute("SELECT operator FROM sessions WHERE token_hash = ?", (token_hash,)).fetchone()
            if row:
                connection.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash,))
                self._audit(connection, now_text(), row["operator"], "sign_out", None, "browser session")

    # Helpers.

    @staticmethod
    def _existing(connection: sqlite3.Connection, alert_id: str) -> sqlite3.Row:
        row = connection.execute("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            raise NotFound(f"no alert with id {alert_id}")
        return row

    @staticmethod
    def _views(connection: sqlite3.Connection, alert_ids: Sequence[str]) -> list[dict[str, Any]]:
        views = []
        for alert_id in alert_ids:
            row = connection.execute(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
            if row is not None:
                views.append(dict(row))
        return views

    @staticmethod
    def _audit(
        connection: sqlite3.Connection, at: str, operator: str, action: str, alert_id: str | None, detail: str
    ) -> None:
        connection.execute(
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


def _resolution(row: sqlite3.Row) -> str:
    return f"was resolved by {row['resolved_by']} at {row['resolved_at']} as code {row['resolved_code']}"
