"""The claim store on its own, against fake-gcs-server: one holder at a time, visibly."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.trigger.conftest import read_claim
from trigger.claims import ClaimState, ClaimStore, Lease, Settled
from trigger.errors import ClaimBusy, PermanentError
from trigger.objects import StorageObject


def _store(client, **kwargs):
    return ClaimStore(client, "_claims/", **{"lease_s": 30.0, "wait_s": 5.0, **kwargs})


def test_only_one_of_many_racers_takes_over_an_expired_claim(gcs_client, inbox):
    obj = StorageObject(inbox.name, "expired.json", 42)
    _store(gcs_client, lease_s=0.01).acquire(obj, by="crashed")
    time.sleep(0.05)
    store = _store(gcs_client)
    winners: list[Lease] = []
    lock = threading.Lock()

    def race(_):
        held = store.acquire(obj)
        if isinstance(held, Lease):
            with lock:
                winners.append(held)
            time.sleep(0.2)  # while "starting the job", the others must wait
            store.settle(held, ClaimState.STARTED, execution="exec-1")
        return held

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(race, range(8)))

    assert len(winners) == 1
    assert sum(isinstance(r, Settled) and r.claim.execution == "exec-1" for r in results) == 7
    claim = read_claim(inbox, "expired.json", 42)
    assert claim is not None and claim["attempt"] == 2


def test_a_holder_whose_lease_was_taken_over_cannot_record_a_start(gcs_client, inbox):
    obj = StorageObject(inbox.name, "slow.json", 7)
    slow = _store(gcs_client, lease_s=0.01).acquire(obj, by="slow")
    time.sleep(0.05)
    fast = _store(gcs_client).acquire(obj, by="fast")
    assert isinstance(slow, Lease) and isinstance(fast, Lease)

    assert _store(gcs_client).settle(slow, ClaimState.STARTED, execution="late") is False
    assert _store(gcs_client).settle(fast, ClaimState.STARTED, execution="on-time") is True
    claim = read_claim(inbox, "slow.json", 7)
    assert claim is not None and claim["execution"] == "on-time"


def test_a_released_claim_is_taken_over_at_once(gcs_client, inbox):
    obj = StorageObject(inbox.name, "released.json", 3)
    store = _store(gcs_client, wait_s=0)
    first = store.acquire(obj)
    assert isinstance(first, Lease)
    assert store.release(first, error="503 from the Admin API") is True

    second = store.acquire(obj)

    assert isinstance(second, Lease) and second.claim.attempt == 2


def test_a_live_claim_makes_others_busy_after_waiting(gcs_client, inbox):
    obj = StorageObject(inbox.name, "live.json", 5)
    _store(gcs_client).acquire(obj, by="event 123")

    started = time.monotonic()
    with pytest.raises(ClaimBusy, match="claimed by event 123"):
        _store(gcs_client, wait_s=0.3).acquire(obj)
    assert 0.2 < time.monotonic() - started < 3


def test_a_corrupt_claim_says_how_to_clear_it(gcs_client, inbox):
    obj = StorageObject(inbox.name, "corrupt.json", 9)
    inbox.blob("_claims/corrupt.json/9").upload_from_string(b"not json")

    with pytest.raises(PermanentError, match="delete it to let the object run"):
        _store(gcs_client).acquire(obj)


def test_a_renewed_lease_outlives_its_first_term_and_settles(gcs_client, inbox):
    obj = StorageObject(inbox.name, "long.json", 11)
    store = _store(gcs_client, lease_s=1.0, wait_s=0)
    held = store.acquire(obj, by="task 0")
    assert isinstance(held, Lease)

    time.sleep(0.6)
    renewed = store.renew(held)
    time.sleep(0.6)  # past the first term, well within the renewed one

    assert renewed is not None and renewed.generation != held.generation
    with pytest.raises(ClaimBusy):
        store.acquire(obj)
    assert store.renew(held) is None  # the old generation is no proof any more
    assert store.settle(renewed, ClaimState.DONE) is True
    assert isinstance(store.acquire(obj), Settled)
