"""The job store: every video job, its claims and its history, on SQLAlchemy.

SQLite in the data directory by default (one machine); PostgreSQL by URL, so that workers on
several machines share one queue. The rules that make a job run exactly once:

- **claim**: a worker takes the oldest claimable job in one transaction. On PostgreSQL the
  candidate row is locked with ``FOR UPDATE SKIP LOCKED``, so concurrent workers take different
  rows without waiting on each other; on SQLite every write transaction is ``BEGIN IMMEDIATE``
  (one writer at a time), which serialises claims the same way.
- **lease**: a claim holds the job until ``lease_expires_at``; the worker's heartbeats extend it.
  A job whose lease ran out (its worker died or hung) is claimable again, up to
  ``max_attempts`` claims, after which it fails as ``worker_lost``.
- **fencing**: each claim has a fresh token. Heartbeats, completion and failure are
  compare-and-set on (job id, token, status), so a worker whose lease was taken over can no longer
  change the job: of all attempts exactly one completes it, and its token names the files served.

Times come from the database's clock, so that workers on machines with skewed clocks agree on
leases. Every transition is also written to an append-only event table (the audit trail, and what
the exactly-once tests read).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine

QUEUED, IN_PROGRESS, COMPLETED, FAILED = "queued", "in_progress", "completed", "failed"
STATUSES = (QUEUED, IN_PROGRESS, COMPLETED, FAILED)
ACTIVE = (QUEUED, IN_PROGRESS)

_metadata = MetaData()
_Serial = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER keys only

jobs = Table(
    "kinema_jobs",
    _metadata,
    Column("seq", _Serial, primary_key=True, autoincrement=True),  # creation order, for paging
    Column("id", String(40), nullable=False, unique=True),
    Column("owner", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Integer, nullable=False),
    Column("model", String(200), nullable=False),
    Column("prompt", Text, nullable=False),
    Column("params", JSON, nullable=False),  # the generation settings, see validation.JobSpec
    Column("remixed_from", String(40)),
    Column("created_at", Float, nullable=False),  # unix seconds, database clock
    Column("started_at", Float),  # first claim
    Column("completed_at", Float),  # completed or failed
    Column("expires_at", Float),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("attempts", Integer, nullable=False),  # claims so far
    Column("worker", String(200)),
    Column("claim_token", String(32)),  # fencing token of the current claim
    Column("attempt_started_at", Float),
    Column("heartbeat_at", Float),
    Column("lease_expires_at", Float),
    Column("cancel_requested", Boolean, nullable=False),
    Column("deleted_at", Float),
    Column("output", String(32)),  # token of the attempt whose files are the result
    Column("purged_at", Float),  # files removed (expired or deleted)
    Column("compute_seconds", Float, nullable=False),  # worker time over all attempts
    Column("telemetry", JSON),
    Column("quality", JSON),
    Index("kinema_jobs_claim", "status", "seq"),
    Index("kinema_jobs_owner", "owner", "seq"),
)

job_events = Table(
    "kinema_job_events",
    _metadata,
    Column("seq", _Serial, primary_key=True, autoincrement=True),
    Column("job_id", String(40), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("worker", String(200)),
    Column("attempt", Integer),
    Column("detail", Text),
)

stage_seconds = Table(
    "kinema_stage_seconds",
    _metadata,
    Column("seq", _Serial, primary_key=True, autoincrement=True),
    Column("job_id", String(40), nullable=False),
    Column("stage", String(32), nullable=False, index=True),
    Column("seconds", Float, nullable=False),
)


@dataclass(frozen=True)
class Job:
    seq: int
    id: str
    owner: str
    status: str
    progress: int
    model: str
    prompt: str
    params: dict
    remixed_from: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    expires_at: float | None
    error_code: str | None
    error_message: str | None
    attempts: int
    worker: str | None
    claim_token: str | None
    attempt_started_at: float | None
    heartbeat_at: float | None
    lease_expires_at: float | None
    cancel_requested: bool
    deleted_at: float | None
    output: str | None
    purged_at: float | None
    compute_seconds: float
    telemetry: dict | None
    quality: dict | None

    @classmethod
    def from_row(cls, row: Any) -> Job:
        m = row._mapping
        return cls(**{f.name: m[f.name] for f in fields(cls)})

    def compute_until(self, now: float) -> float:
        """Compute seconds of all attempts, the running one counted up to now."""
        return self.compute_seconds + max(0.0, now - (self.attempt_started_at or now))


@dataclass(frozen=True)
class Claim:
    """A worker's hold on a job; the token fences everything it writes."""

    job: Job
    token: str
    worker: str

    @property
    def attempt(self) -> int:
        return self.job.attempts


@dataclass(frozen=True)
class Beat:
    alive: bool  # the claim still holds (False: another worker took the job over, or it is gone)
    cancel: bool  # the owner cancelled or deleted the job


class QueueFull(Exception):
    def __init__(self, active: int, limit: int):
        super().__init__(
            f"{active} jobs of this key are queued or in progress; the limit is {limit}"
        )
        self.active, self.limit = active, limit


class UnknownCursor(LookupError):
    """`after` names no video of this owner."""


def new_job_id() -> str:
    return f"video_{uuid.uuid4().hex}"


def make_engine(url: str) -> Engine:
    """An engine with the settings the store relies on (see the module docstring)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=10,
            max_overflow=40,  # the API's thread pool runs up to 40 requests at once
        )

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # the driver must not BEGIN on its own: we do
            cur = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            read_only = conn.get_execution_options().get("kinema_read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=40)


def _now(conn: Connection) -> float:
    """Unix seconds on the database's clock."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar())
    if conn.dialect.name == "sqlite":
        return float(conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar())
    return time.time()


class JobStore:
    def __init__(
        self,
        url: str,
        lease_seconds: float = 30.0,
        max_attempts: int = 3,
        retention_seconds: float | None = 24 * 3600,
    ):
        if lease_seconds <= 0 or max_attempts < 1:
            raise ValueError("lease_seconds must be positive and max_attempts at least 1")
        self.engine = make_engine(url)
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.retention_seconds = retention_seconds
        self._create_schema()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def _create_schema(self) -> None:
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":  # several processes may start at once
                conn.execute(text("SELECT pg_advisory_xact_lock(4242104)"))
            _metadata.create_all(conn)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(kinema_read_only=True)
            with conn.begin():
                yield conn

    @staticmethod
    def _event(conn, now, job_id, kind, worker=None, attempt=None, detail=None) -> None:
        conn.execute(
            insert(job_events).values(
                job_id=job_id, at=now, kind=kind, worker=worker, attempt=attempt, detail=detail
            )
        )

    # ------------------------------------------------------------------ the API's side

    def create(
        self,
        owner: str,
        model: str,
        prompt: str,
        params: dict,
        max_active: int | None = None,
        remixed_from: str | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Queue a job; QueueFull when the owner already has max_active unfinished jobs.
        job_id: an id from new_job_id(), for a job whose input files were written first."""
        with self._write() as conn:
            if self.dialect == "postgresql":  # serialise one owner's check-then-insert
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:o))"), {"o": owner})
            if max_active is not None:
                active = conn.execute(
                    select(func.count()).where(
                        jobs.c.owner == owner,
                        jobs.c.status.in_(ACTIVE),
                        jobs.c.deleted_at.is_(None),
                    )
                ).scalar_one()
                if active >= max_active:
                    raise QueueFull(active, max_active)
            now = _now(conn)
            job_id = job_id or new_job_id()
            conn.execute(
                insert(jobs).values(
                    id=job_id,
                    owner=owner,
                    status=QUEUED,
                    progress=0,
                    model=model,
                    prompt=prompt,
                    params=params,
                    remixed_from=remixed_from,
                    created_at=now,
                    attempts=0,
                    cancel_requested=False,
                    compute_seconds=0.0,
                )  # fmt: skip
            )
            self._event(conn, now, job_id, "created")
            return Job.from_row(conn.execute(select(jobs).where(jobs.c.id == job_id)).one())

    def get(self, job_id: str, owner: str | None = None) -> Job | None:
        """The job, or None when it does not exist, was deleted, or belongs to another owner."""
        query = select(jobs).where(jobs.c.id == job_id, jobs.c.deleted_at.is_(None))
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        with self._read() as conn:
            row = conn.execute(query).one_or_none()
        return Job.from_row(row) if row is not None else None

    def list(
        self, owner: str, after: str | None = None, limit: int = 20, order: str = "desc"
    ) -> tuple[list[Job], bool]:
        """One page of the owner's videos, newest first by default, and whether more follow."""
        query = select(jobs).where(jobs.c.owner == owner, jobs.c.deleted_at.is_(None))
        with self._read() as conn:
            if after is not None:
                seq = conn.execute(
                    select(jobs.c.seq).where(jobs.c.id == after, jobs.c.owner == owner)
                ).scalar_one_or_none()  # deleted rows still count as cursors
                if seq is None:
                    raise UnknownCursor(after)
                query = query.where(jobs.c.seq < seq if order == "desc" else jobs.c.seq > seq)
            query = query.order_by(jobs.c.seq.desc() if order == "desc" else jobs.c.seq.asc())
            rows = conn.execute(query.limit(limit + 1)).all()
        return [Job.from_row(r) for r in rows[:limit]], len(rows) > limit

    def cancel(self, job_id: str, owner: str | None = None, delete: bool = False) -> Job | None:
        """Cancel (and with delete=True, delete) a job. A queued job fails at once as
        ``cancelled``; a running one is flagged and its worker stops at its next heartbeat."""
        with self._write() as conn:
            query = select(jobs).where(jobs.c.id == job_id, jobs.c.deleted_at.is_(None))
            if owner is not None:
                query = query.where(jobs.c.owner == owner)
            row = conn.execute(query.with_for_update()).one_or_none()
            if row is None:
                return None
            job = Job.from_row(row)
            now = _now(conn)
            values: dict[str, Any] = {}
            if job.status == QUEUED:
                values = dict(
                    status=FAILED, completed_at=now, error_code="cancelled",
                    error_message="cancelled before it started",
                )  # fmt: skip
            elif job.status == IN_PROGRESS:
                values = dict(cancel_requested=True)
            if delete:
                values["deleted_at"] = now
            if values:
                conn.execute(update(jobs).where(jobs.c.seq == job.seq).values(**values))
            if job.status in ACTIVE:
                self._event(conn, now, job_id, "cancel_requested")
            if delete:
                self._event(conn, now, job_id, "deleted")
            return Job.from_row(conn.execute(select(jobs).where(jobs.c.seq == job.seq)).one())

    def delete(self, job_id: str, owner: str | None = None) -> Job | None:
        return self.cancel(job_id, owner, delete=True)

    # ------------------------------------------------------------------ the workers' side

    def _claimable(self, now: float, models: Sequence[str] | None):
        cond = or_(
            and_(jobs.c.status == QUEUED, jobs.c.deleted_at.is_(None)),
            and_(jobs.c.status == IN_PROGRESS, jobs.c.lease_expires_at < now),
        )
        return and_(cond, jobs.c.model.in_(models)) if models else cond

    def claim(self, worker: str, models: Sequence[str] | None = None) -> Claim | None:
        """Take the oldest queued job, or one whose lease expired; None when there is none."""
        with self._write() as conn:
            now = _now(conn)
            for _ in range(100):  # each pass settles one candidate: claimed, or failed for good
                query = (
                    select(jobs)
                    .where(self._claimable(now, models))
                    .order_by(jobs.c.seq)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
                row = conn.execute(query).one_or_none()
                if row is None:
                    return None
                job = Job.from_row(row)
                values: dict[str, Any] = {}
                if job.status == IN_PROGRESS:  # its worker is gone: count what it spent
                    lost = max(0.0, (job.heartbeat_at or now) - (job.attempt_started_at or now))
                    values["compute_seconds"] = job.compute_seconds + lost
                    self._event(conn, now, job.id, "lease_expired", job.worker, job.attempts)
                    if job.cancel_requested or job.deleted_at is not None:
                        self._finish(conn, now, job, FAILED, "cancelled", "cancelled", values)
                        continue
                    if job.attempts >= self.max_attempts:
                        message = f"the job's worker stopped responding {job.attempts} times"
                        self._finish(conn, now, job, FAILED, "worker_lost", message, values)
                        continue
                token = secrets.token_hex(16)
                values.update(
                    status=IN_PROGRESS, progress=0, worker=worker, claim_token=token,
                    attempts=job.attempts + 1, attempt_started_at=now, heartbeat_at=now,
                    lease_expires_at=now + self.lease_seconds,
                    started_at=job.started_at if job.started_at is not None else now,
                )  # fmt: skip
                result = conn.execute(
                    update(jobs)
                    .where(jobs.c.seq == job.seq, jobs.c.status == job.status)
                    .where(jobs.c.attempts == job.attempts)
                    .values(**values)
                )
                if result.rowcount != 1:  # taken meanwhile (cannot happen under the lock)
                    continue
                self._event(conn, now, job.id, "claimed", worker, job.attempts + 1)
                claimed = conn.execute(select(jobs).where(jobs.c.seq == job.seq)).one()
                return Claim(Job.from_row(claimed), token, worker)
        return None

    def _finish(self, conn, now, job: Job, status, code, message, values) -> None:
        conn.execute(
            update(jobs)
            .where(jobs.c.seq == job.seq)
            .values(
                status=status,
                completed_at=now,
                error_code=code,
                error_message=message,
                claim_token=None,
                lease_expires_at=None,
                **values,
            )  # fmt: skip
        )
        self._event(conn, now, job.id, status, job.worker, job.attempts, code)

    def _held(self, claim: Claim):
        return and_(
            jobs.c.id == claim.job.id,
            jobs.c.claim_token == claim.token,
            jobs.c.status == IN_PROGRESS,
        )

    def _lock_held(self, conn: Connection, claim: Claim, *conditions) -> Job | None:
        """The claimed job, row-locked, if the claim still holds (and the conditions do)."""
        row = conn.execute(
            select(jobs).where(self._held(claim), *conditions).with_for_update()
        ).one_or_none()
        return None if row is None else Job.from_row(row)

    def heartbeat(self, claim: Claim, progress: int | None = None) -> Beat:
        """Extend the lease (and record progress); tells whether to go on."""
        with self._write() as conn:
            now = _now(conn)
            values: dict[str, Any] = dict(
                heartbeat_at=now, lease_expires_at=now + self.lease_seconds
            )
            if progress is not None:
                p = max(0, min(99, int(progress)))
                values["progress"] = case((jobs.c.progress < p, p), else_=jobs.c.progress)
            result = conn.execute(update(jobs).where(self._held(claim)).values(**values))
            if result.rowcount != 1:
                return Beat(alive=False, cancel=False)
            row = conn.execute(
                select(jobs.c.cancel_requested, jobs.c.deleted_at).where(jobs.c.id == claim.job.id)
            ).one()
            return Beat(alive=True, cancel=bool(row.cancel_requested) or row.deleted_at is not None)

    def complete(
        self,
        claim: Claim,
        stages: dict[str, float] | None = None,
        quality: dict | None = None,
        cost_per_hour: float = 0.0,
    ) -> bool:
        """Mark the job completed with this claim's files; False if the claim no longer holds
        (lease taken over, cancelled or deleted): then nothing changes."""
        with self._write() as conn:
            now = _now(conn)
            job = self._lock_held(
                conn, claim, jobs.c.deleted_at.is_(None), jobs.c.cancel_requested.is_(False)
            )
            if job is None:
                return False
            compute = job.compute_until(now)
            telemetry = {
                "queue_seconds": (job.started_at or now) - job.created_at,
                "time_to_first_result_seconds": now - job.created_at,
                "compute_seconds": compute,
                "attempts": job.attempts,
                "cost_estimate_usd": compute * cost_per_hour / 3600.0,
                "stages": dict(stages or {}),
            }
            expires = now + self.retention_seconds if self.retention_seconds else None
            conn.execute(
                update(jobs)
                .where(jobs.c.seq == job.seq)
                .values(
                    status=COMPLETED,
                    progress=100,
                    completed_at=now,
                    expires_at=expires,
                    output=claim.token,
                    claim_token=None,
                    lease_expires_at=None,
                    compute_seconds=compute,
                    telemetry=telemetry,
                    quality=quality,
                )  # fmt: skip
            )
            if stages:
                conn.execute(
                    insert(stage_seconds),
                    [{"job_id": job.id, "stage": s, "seconds": v} for s, v in stages.items()],
                )
            self._event(conn, now, job.id, COMPLETED, claim.worker, job.attempts)
            return True

    def fail(self, claim: Claim, code: str, message: str) -> bool:
        """Mark the job failed; False if the claim no longer holds."""
        with self._write() as conn:
            now = _now(conn)
            job = self._lock_held(conn, claim)
            if job is None:
                return False
            compute = job.compute_until(now)
            self._finish(conn, now, job, FAILED, code, message, {"compute_seconds": compute})
            return True

    def release(self, claim: Claim) -> bool:
        """Give a job back to the queue unfinished (a worker shutting down), uncounted."""
        with self._write() as conn:
            now = _now(conn)
            job = self._lock_held(conn, claim)
            if job is None:
                return False
            if job.cancel_requested or job.deleted_at is not None:
                self._finish(conn, now, job, FAILED, "cancelled", "cancelled", {})
                return True
            conn.execute(
                update(jobs)
                .where(jobs.c.seq == job.seq)
                .values(
                    status=QUEUED,
                    progress=0,
                    worker=None,
                    claim_token=None,
                    lease_expires_at=None,
                    attempts=job.attempts - 1,
                    compute_seconds=job.compute_until(now),
                )  # fmt: skip
            )
            self._event(conn, now, job.id, "released", claim.worker, job.attempts)
            return True

    # ------------------------------------------------------------------ operations

    def events(self, job_id: str) -> list[dict]:
        with self._read() as conn:
            rows = conn.execute(
                select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.seq)
            ).all()
        return [dict(r._mapping) for r in rows]

    def counts(self) -> dict[str, int]:
        """Jobs by status (deleted ones left out); every status is present."""
        with self._read() as conn:
            rows = conn.execute(
                select(jobs.c.status, func.count())
                .where(jobs.c.deleted_at.is_(None))
                .group_by(jobs.c.status)
            ).all()
        return {s: 0 for s in STATUSES} | {s: n for s, n in rows}

    def stalled(self) -> int:
        """Jobs in progress whose lease has run out (their worker is gone or hung)."""
        with self._read() as conn:
            now = _now(conn)
            return conn.execute(
                select(func.count()).where(
                    jobs.c.status == IN_PROGRESS, jobs.c.lease_expires_at < now
                )
            ).scalar_one()

    def stage_histograms(self, buckets: Sequence[float]) -> dict[str, tuple[list[int], float, int]]:
        """Per stage: cumulative counts at each bucket bound, the sum and the count."""
        cols = [func.sum(case((stage_seconds.c.seconds <= b, 1), else_=0)) for b in buckets]
        with self._read() as conn:
            rows = conn.execute(
                select(
                    stage_seconds.c.stage, func.count(), func.sum(stage_seconds.c.seconds), *cols
                ).group_by(stage_seconds.c.stage)
            ).all()
        return {r[0]: ([int(c or 0) for c in r[3:]], float(r[2] or 0), int(r[1])) for r in rows}

    def completion_totals(self, buckets: Sequence[float]) -> dict:
        """Over completed jobs: latency histogram (created -> completed), compute and cost sums."""
        latency = jobs.c.completed_at - jobs.c.created_at
        cols = [func.sum(case((latency <= b, 1), else_=0)) for b in buckets]
        with self._read() as conn:
            row = conn.execute(
                select(
                    func.count(), func.sum(latency), func.sum(jobs.c.compute_seconds), *cols
                ).where(jobs.c.status == COMPLETED)
            ).one()
        return {
            "count": int(row[0]),
            "latency_sum": float(row[1] or 0),
            "compute_sum": float(row[2] or 0),
            "latency_buckets": [int(c or 0) for c in row[3:]],
        }

    def to_purge(self, limit: int = 100) -> list[Job]:
        """Jobs whose files should go: deleted, or finished and past their expiry."""
        with self._read() as conn:
            now = _now(conn)
            rows = conn.execute(
                select(jobs)
                .where(jobs.c.purged_at.is_(None))
                .where(or_(jobs.c.deleted_at.is_not(None), jobs.c.expires_at < now))
                .order_by(jobs.c.seq)
                .limit(limit)
            ).all()
        return [Job.from_row(r) for r in rows]

    def mark_purged(self, job_id: str) -> None:
        with self._write() as conn:
            now = _now(conn)
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(purged_at=now))
            self._event(conn, now, job_id, "purged")
