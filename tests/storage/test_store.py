"""One contract, two backends: every test runs against GCS (fake-gcs-server) and a local folder."""

from __future__ import annotations

import inspect
import secrets
import threading
from pathlib import Path

import pytest

from job.devstack.gcs_emulator import GcsEmulator
from job.errors import InputNotFound
from job.storage import Listed, Storages, Store, TooLarge, Versioned, WriteConflict, as_folder


class Backend:
    """A Storages and a fresh root folder URI on one backend."""

    def __init__(self, kind: str, storages: Storages, root: str) -> None:
        self.kind = kind
        self.storages = storages
        self.root = root

    def uri(self, name: str) -> str:
        return self.root + name


@pytest.fixture(params=["gcs", "local"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return Backend("local", Storages(), f"{tmp_path}/store/")
    gcs: GcsEmulator = request.getfixturevalue("gcs")
    bucket = f"store-{secrets.token_hex(4)}"
    gcs.create_bucket(bucket)
    return Backend("gcs", Storages(gcs.project, client=request.getfixturevalue("gcs_client")), f"gs://{bucket}/")


def test_write_then_read_round_trips_with_the_generation_written(backend: Backend) -> None:
    uri = backend.uri("a/doc.json")
    generation = backend.storages.write(uri, b'{"x": 1}', "application/json")
    assert generation > 0
    assert backend.storages.read(uri) == b'{"x": 1}'
    assert backend.storages.read_versioned(uri) == Versioned(b'{"x": 1}', generation)
    assert backend.storages.generation(uri) == generation
    assert backend.storages.read(uri, generation=generation) == b'{"x": 1}'


def test_an_absent_object_is_not_found_none_and_no_generation(backend: Backend) -> None:
    uri = backend.uri("nothing/here.json")
    with pytest.raises(InputNotFound, match="does not exist"):
        backend.storages.read(uri)
    assert backend.storages.read_versioned(uri) is None
    assert backend.storages.generation(uri) is None


def test_every_write_makes_a_new_generation_and_an_old_one_is_gone(backend: Backend) -> None:
    uri = backend.uri("g.txt")
    first = backend.storages.write(uri, b"one")
    second = backend.storages.write(uri, b"two")  # same clock tick, as likely as not
    assert second > first
    assert backend.storages.generation(uri) == second
    with pytest.raises(InputNotFound):
        backend.storages.read(uri, generation=first)


def test_if_generation_zero_creates_once_and_refuses_an_existing_object(backend: Backend) -> None:
    uri = backend.uri("once.json")
    created = backend.storages.write(uri, b"first", if_generation=0)
    with pytest.raises(WriteConflict):
        backend.storages.write(uri, b"second", if_generation=0)
    assert backend.storages.read_versioned(uri) == Versioned(b"first", created)


def test_a_stale_generation_is_a_conflict_and_leaves_the_object_unchanged(backend: Backend) -> None:
    uri = backend.uri("cas.json")
    stale = backend.storages.write(uri, b"v1")
    current = backend.storages.write(uri, b"v2")
    with pytest.raises(WriteConflict):
        backend.storages.write(uri, b"v3", if_generation=stale)
    assert backend.storages.read_versioned(uri) == Versioned(b"v2", current)
    with pytest.raises(WriteConflict):
        backend.storages.write(backend.uri("absent.json"), b"x", if_generation=current)
    assert backend.storages.generation(backend.uri("absent.json")) is None

    replaced = backend.storages.write(uri, b"v3", if_generation=current)
    assert replaced > current
    assert backend.storages.read(uri) == b"v3"


def race(storages: Storages, uri: str, generation: int, contenders: int) -> tuple[list[bytes], int]:
    """`contenders` threads write `uri` at once, each if it is still at `generation`: (what won, how many lost)."""
    barrier = threading.Barrier(contenders)
    won: list[bytes] = []
    lost: list[WriteConflict] = []

    def contend(mine: bytes) -> None:
        barrier.wait()
        try:
            storages.write(uri, mine, if_generation=generation)
            won.append(mine)
        except WriteConflict as exc:
            lost.append(exc)

    threads = [threading.Thread(target=contend, args=(f"{generation}-{n}".encode(),)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won, len(lost)


def test_of_threads_racing_a_compare_and_swap_exactly_one_wins(backend: Backend) -> None:
    uri = backend.uri("race.json")
    for _ in range(5):
        won, lost = race(backend.storages, uri, backend.storages.write(uri, b"start"), contenders=4)
        assert (len(won), lost) == (1, 3), won
        assert backend.storages.read(uri) == won[0]


def test_listing_a_prefix_names_what_is_under_it(backend: Backend) -> None:
    write = backend.storages.write
    generations = {name: write(backend.uri(name), name.encode()) for name in ("a/x.json", "a/b/result.json")}
    for name in ("a/sub/deep/y.json", "ab.json", "other/z.txt"):
        write(backend.uri(name), name.encode())

    def names(prefix: str, glob: str | None = None) -> list[str]:
        return [item.name for item in backend.storages.list(backend.uri(prefix), glob=glob)]

    assert names("a/") == ["b/result.json", "sub/deep/y.json", "x.json"]
    assert names("a") == ["/b/result.json", "/sub/deep/y.json", "/x.json", "b.json"], "a partial name is a prefix"
    assert names("a/", glob="*/result.json") == ["b/result.json"], "`*` stays inside one folder"
    assert names("a/", glob="*.json") == ["x.json"]
    assert names("a/", glob="**.json") == ["b/result.json", "sub/deep/y.json", "x.json"], "`**` crosses folders"
    assert names("a/none") == [], "a prefix nothing starts with lists nothing"

    listed = next(iter(backend.storages.list(backend.uri("a/"), glob="x.json")))
    assert listed == Listed(backend.uri("a/x.json"), "x.json", generations["a/x.json"], len(b"a/x.json"))


def test_listing_where_nothing_can_be_is_not_found(backend: Backend) -> None:
    holder = "gs://no-such-bucket-for-listing/" if backend.kind == "gcs" else backend.uri("no/such/folder/")
    with pytest.raises(InputNotFound):
        list(backend.storages.list(holder))


def test_a_bounded_read_refuses_more_than_the_limit(backend: Backend) -> None:
    uri = backend.uri("sized.bin")
    backend.storages.write(uri, b"x" * 100)
    assert backend.storages.read(uri, max_bytes=100, timeout_s=10) == b"x" * 100
    with pytest.raises(TooLarge, match="larger than 99 bytes"):
        backend.storages.read(uri, max_bytes=99, timeout_s=10)
    backend.storages.write(backend.uri("empty.bin"), b"")
    assert backend.storages.read(backend.uri("empty.bin"), max_bytes=10) == b""


@pytest.mark.parametrize("slice_bytes", [None, 1000])
def test_download_copies_the_object_into_a_file(backend: Backend, tmp_path: Path, slice_bytes: int | None) -> None:
    data = bytes(range(256)) * 20
    uri = backend.uri("model.bin")
    generation = backend.storages.write(uri, data)
    target = tmp_path / "copy.bin"
    backend.storages.download(uri, target, generation=generation, slice_bytes=slice_bytes, workers=3)
    assert target.read_bytes() == data
    backend.storages.write(uri, b"newer")
    with pytest.raises(InputNotFound):
        backend.storages.download(uri, tmp_path / "stale.bin", generation=generation)


# ----------------------------------------------------------------------------- one backend --


def test_gcs_writes_carry_their_content_type_and_cache_control(gcs: GcsEmulator, gcs_client: object) -> None:
    storages = Storages(gcs.project, client=gcs_client)  # type: ignore[arg-type]
    storages.write("gs://outbox/store-test/status.json", b"{}", "application/json", cache_control="no-store")
    blob = gcs.client().bucket("outbox").get_blob("store-test/status.json")
    assert (blob.content_type, blob.cache_control) == ("application/json", "no-store")


def test_local_writes_leave_nothing_beside_the_file_and_file_uris_work(tmp_path: Path) -> None:
    storages = Storages()
    generation = storages.write(f"file://{tmp_path}/out/a%20b.txt", b"spaced")
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["a b.txt"]
    assert storages.read_versioned(str(tmp_path / "out" / "a b.txt")) == Versioned(b"spaced", generation)
    (tmp_path / "out" / ".c.txt.0badf00d.partial").write_bytes(b"a killed write")
    assert [item.name for item in storages.list(f"{tmp_path}/out/")] == ["a b.txt"], "partials are never objects"


def test_a_failed_conditional_write_on_disk_removes_its_partial(tmp_path: Path) -> None:
    storages = Storages()
    storages.write(str(tmp_path / "x.json"), b"1")
    with pytest.raises(WriteConflict):
        storages.write(str(tmp_path / "x.json"), b"2", if_generation=0)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["x.json"]


@pytest.mark.parametrize(
    ("uri", "folder"),
    [("gs://b", "gs://b/"), ("gs://b/p", "gs://b/p/"), ("gs://b/p/", "gs://b/p/"), ("out", "out/"), ("", "")],
)
def test_as_folder_ends_a_uri_in_one_slash(uri: str, folder: str) -> None:
    assert as_folder(uri) == folder


def test_both_backends_and_the_router_have_the_store_protocol_as_declared() -> None:
    from job.storage.gcs import GcsStore
    from job.storage.local import LocalStore

    declared = {name: inspect.signature(method) for name, method in vars(Store).items() if not name.startswith("_")}
    assert set(declared) == {"read", "read_versioned", "generation", "write", "list", "download"}
    for cls in (GcsStore, LocalStore, Storages):
        assert {name: inspect.signature(getattr(cls, name)) for name in declared} == declared, cls.__name__
