"""The job store on SQLite and on PostgreSQL: claims, leases, fencing, limits, paging."""

import threading
import time

import pytest
from serve_helpers import postgres_database

pytest.importorskip("sqlalchemy")

from kinema.serve.jobs import (  # noqa: E402
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    JobStore,
    QueueFull,
    UnknownCursor,
)

PARAMS = {"width": 64, "height": 64, "num_frames": 9, "fps": 8.0, "steps": 2, "guidance": 5.0,
          "negative_prompt": "", "seed": 0, "solver": "euler", "seconds": "1"}  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
    else:
        with postgres_database() as pg_url:
            yield pg_url


def make_store(url, **kw):
    store = JobStore(url, **{"lease_seconds": 30.0, **kw})
    return store


def kinds(store, job_id):
    return [e["kind"] for e in store.events(job_id)]


def test_lifecycle_and_exactly_one_completion(url):
    store = make_store(url)
    job = store.create("alice", "kinema-tiny", "a red circle", PARAMS)
    assert job.status == QUEUED and job.progress == 0 and job.id.startswith("video_")
    claim = store.claim("w1", ["kinema-tiny"])
    assert claim.job.id == job.id and claim.job.status == IN_PROGRESS and claim.attempt == 1
    assert store.claim("w2", ["kinema-tiny"]) is None  # nothing else to take
    assert store.claim("w2", ["other-model"]) is None
    beat = store.heartbeat(claim, 42)
    assert beat.alive and not beat.cancel and store.get(job.id).progress == 42
    store.heartbeat(claim, 10)  # progress never goes back
    assert store.get(job.id).progress == 42
    assert store.complete(claim, {"sample": 0.5, "decode": 0.1}, {"flicker": 1.0}, 3600.0)
    assert not store.complete(claim, {"sample": 0.5})  # a second completion changes nothing
    done = store.get(job.id)
    assert done.status == COMPLETED and done.progress == 100 and done.output == claim.token
    assert done.telemetry["stages"] == {"sample": 0.5, "decode": 0.1}
    assert done.telemetry["cost_estimate_usd"] == pytest.approx(done.compute_seconds, rel=1e-6)
    assert done.expires_at > done.completed_at >= done.created_at
    assert kinds(store, job.id) == ["created", "claimed", "completed"]
    assert store.get(job.id, owner="bob") is None  # another owner sees nothing
    hist = store.stage_histograms([0.2, 1.0])
    assert hist["sample"] == ([0, 1], 0.5, 1) and hist["decode"] == ([1, 1], 0.1, 1)
    assert store.counts()[COMPLETED] == 1 and store.counts()[QUEUED] == 0
    store.close()
    reopened = make_store(url)  # a restart loses nothing
    assert reopened.get(job.id) == done and kinds(reopened, job.id)[-1] == "completed"
    reopened.close()


def test_concurrent_claims_take_each_job_once(url):
    store = make_store(url)
    ids = {store.create("alice", "kinema-tiny", f"job {i}", PARAMS).id for i in range(12)}
    taken, lock = [], threading.Lock()

    def claimer(name):
        own = make_store(url)  # its own engine and connections, as another process would have
        while (claim := own.claim(name, ["kinema-tiny"])) is not None:
            with lock:
                taken.append(claim.job.id)
        own.close()

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == sorted(ids)  # every job once, none twice
    assert all(kinds(store, i).count("claimed") == 1 for i in ids)
    store.close()


def test_postgres_claims_skip_locked_rows():
    """A claim does not wait for a row another transaction holds: it takes the next one."""
    with postgres_database() as pg_url:
        store = make_store(pg_url)
        first = store.create("alice", "kinema-tiny", "first", PARAMS)
        second = store.create("alice", "kinema-tiny", "second", PARAMS)
        import sqlalchemy as sa

        holder = sa.create_engine(pg_url)
        with holder.connect() as conn, conn.begin():
            conn.execute(
                sa.text("SELECT id FROM kinema_jobs WHERE id = :i FOR UPDATE"), {"i": first.id}
            )
            result = {}
            thread = threading.Thread(target=lambda: result.update(c=store.claim("w", None)))
            thread.start()
            thread.join(10)
            assert not thread.is_alive(), "the claim blocked on a locked row"
            assert result["c"].job.id == second.id
        assert store.claim("w", None).job.id == first.id  # free again once the lock is gone
        holder.dispose()
        store.close()


def test_lease_expiry_reclaim_and_fencing(url):
    store = make_store(url, lease_seconds=0.3)
    job = store.create("alice", "kinema-tiny", "a red circle", PARAMS)
    stale = store.claim("w1", None)
    assert store.claim("w2", None) is None  # the lease holds
    time.sleep(0.5)  # w1 went silent past its lease
    fresh = store.claim("w2", None)
    assert fresh.job.id == job.id and fresh.attempt == 2 and fresh.token != stale.token
    assert not store.heartbeat(stale, 50).alive  # the stale worker learns it lost the job
    assert not store.complete(stale, {"sample": 1.0})
    assert not store.fail(stale, "x", "y") and not store.release(stale)
    assert store.complete(fresh, {"sample": 1.0})
    done = store.get(job.id)
    assert done.status == COMPLETED and done.output == fresh.token and done.attempts == 2
    assert kinds(store, job.id) == ["created", "claimed", "lease_expired", "claimed", "completed"]
    store.close()


def test_too_many_lost_attempts_fail_the_job(url):
    store = make_store(url, lease_seconds=0.2, max_attempts=2)
    job = store.create("alice", "kinema-tiny", "a red circle", PARAMS)
    store.claim("w1", None)
    time.sleep(0.3)
    store.claim("w2", None)
    time.sleep(0.3)
    assert store.claim("w3", None) is None
    lost = store.get(job.id)
    assert lost.status == FAILED and lost.error_code == "worker_lost" and lost.attempts == 2
    store.close()


def test_cancel_queued_and_running_and_release(url):
    store = make_store(url)
    queued = store.create("alice", "kinema-tiny", "one", PARAMS)
    running = store.create("alice", "kinema-tiny", "two", PARAMS)
    assert store.cancel(queued.id, "bob") is None  # not bob's
    assert store.cancel(queued.id, "alice").status == FAILED
    assert store.get(queued.id).error_code == "cancelled"
    claim = store.claim("w1", None)
    assert claim.job.id == running.id
    assert store.cancel(running.id, "alice").status == IN_PROGRESS
    beat = store.heartbeat(claim)
    assert beat.alive and beat.cancel
    assert not store.complete(claim, {})  # a cancelled job cannot complete
    assert store.fail(claim, "cancelled", "cancelled while generating")
    assert store.get(running.id).status == FAILED
    third = store.create("alice", "kinema-tiny", "three", PARAMS)
    claim = store.claim("w1", None)
    assert store.release(claim)  # a worker shutting down hands it back, uncounted
    back = store.get(third.id)
    assert back.status == QUEUED and back.attempts == 0 and back.claim_token is None
    assert store.claim("w2", None).job.id == third.id
    store.close()


def test_active_jobs_per_owner_limit(url):
    store = make_store(url)
    for i in range(2):
        store.create("alice", "kinema-tiny", f"job {i}", PARAMS, max_active=2)
    with pytest.raises(QueueFull, match="limit is 2"):
        store.create("alice", "kinema-tiny", "one more", PARAMS, max_active=2)
    store.create("bob", "kinema-tiny", "bob's", PARAMS, max_active=2)  # per owner
    claim = store.claim("w", None)
    store.complete(claim, {})
    store.create("alice", "kinema-tiny", "now there is room", PARAMS, max_active=2)
    store.close()


def test_list_pages_by_cursor_both_orders(url):
    store = make_store(url)
    ids = [store.create("alice", "kinema-tiny", f"job {i}", PARAMS).id for i in range(5)]
    store.create("bob", "kinema-tiny", "bob's", PARAMS)
    page, more = store.list("alice", limit=2)
    assert [j.id for j in page] == ids[::-1][:2] and more
    page, more = store.list("alice", after=page[-1].id, limit=2)
    assert [j.id for j in page] == ids[::-1][2:4] and more
    page, more = store.list("alice", after=page[-1].id, limit=2)
    assert [j.id for j in page] == ids[:1] and not more
    page, more = store.list("alice", order="asc", limit=10)
    assert [j.id for j in page] == ids and not more
    store.delete(ids[2], "alice")
    page, _ = store.list("alice", after=ids[2], order="asc")  # a deleted cursor still pages
    assert [j.id for j in page] == ids[3:]
    assert ids[2] not in [j.id for j in store.list("alice")[0]]
    with pytest.raises(UnknownCursor):
        store.list("bob", after=ids[0])
    store.close()


def test_expired_and_deleted_videos_are_purged(url):
    store = make_store(url, retention_seconds=0.2)
    kept = store.create("alice", "kinema-tiny", "kept", PARAMS)
    gone = store.create("alice", "kinema-tiny", "deleted", PARAMS)
    store.delete(gone.id, "alice")
    claim = store.claim("w", None)
    store.complete(claim, {})
    assert [j.id for j in store.to_purge()] == [gone.id]
    time.sleep(0.3)
    assert [j.id for j in store.to_purge()] == [kept.id, gone.id]
    for j in store.to_purge():
        store.mark_purged(j.id)
    assert store.to_purge() == [] and store.get(kept.id).purged_at is not None
    store.close()
