"""Live HL7 v2 feed: an asyncio MLLP server that lands every message durably before it acknowledges it.

Framing (HL7 v2 MLLP release 1): ``0x0B <message> 0x1C 0x0D``. Bytes outside a frame are discarded
(logged by count, never by content, and counted). A frame cut by a disconnect, a read timeout or a new
``0x0B`` is never acknowledged and never landed as a message; its bytes go to ``landing/mllp/_rejected/``
for forensics.

Durability (group commit): complete frames that arrive within a short window are appended to
``landing/mllp/<yyyymmdd>/.<name>.tmp``; the file is fsynced, renamed to ``<name>`` =
``<yyyymmddTHHMMSSffffffZ>-<pid>-<seq>.hl7`` and the directory fsynced; only then is each message of
the batch answered with ``MSA|AA``. After a kill -9, a left-over ``.tmp`` file holds only messages that
were never acknowledged (ingestion ignores names starting with ``.``).

Landed file format: each message's exact bytes (frame bytes stripped; leading BOM/whitespace before
MSH dropped), each followed by one ``\\n``. HL7 terminates segments with ``\\r``, so a line break
followed by ``MSH`` starts the next message; :func:`split_landed` recovers the exact messages.

Messages it cannot accept get ``AR`` (what Bronze would quarantine: no MSH, invalid MSH-1/MSH-2, missing MSH-9,
MSH-10 or MSH-12; over the size limit) or ``AE`` (could not be stored; the sender should retry), with an ERR
segment for v2.3+. Bytes outside a frame (such as the tail of a message that contained ``0x1C 0x0D``) are kept in
``_rejected/``. A landed file holds messages of one character-set class (valid UTF-8 or not), so one sender's
Latin-1 never garbles another's UTF-8.

Bounds: a connection may be silent ``idle_timeout`` between frames and ``read_timeout`` inside one, and a whole
frame must arrive within ``frame_deadline`` (a frame trickled a byte at a time is cut); at most
``max_connections`` in total and ``max_connections_per_peer`` per address; when a cap is reached the longest-idle
connection in its scope is closed to admit the newcomer (idle senders cannot lock out a working one); each
connection buffers at most ``max_message_bytes`` of one frame. Optional mutual TLS (``tls_client_ca``) and an
allow-list of peer networks (``allowed_peers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import re
import signal
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bronze.job import ingest
from bronze.mllp_protocol import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Cut,
    Frame,
    Garbage,
    MllpFramer,
    MshHeader,
    Rejection,
    build_ack,
    charset_class,
    frame,
    parse_msh,
)
from lakehouse import metrics
from lakehouse.config import Settings
from lakehouse.errors import ConfigError
from lakehouse.logs import get_logger
from lakehouse.runlog import run_context

log = get_logger(__name__)

MLLP_DIR = "mllp"
REJECTED_DIR = "_rejected"
LEADING_NOISE = b"\xef\xbb\xbf\r\n\t "
WRITE_BUFFER_LIMIT = 256 * 1024
SLOW_COMMIT_SECONDS = 1.0


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2575
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    read_timeout: float = 30.0           # silence allowed while a frame is incomplete
    frame_deadline: float = 120.0        # a whole frame must arrive within this, however it trickles in
    idle_timeout: float | None = 600.0   # silence allowed between frames (None: keep the connection)
    commit_window: float = 0.001         # extra wait to gather a group commit
    commit_workers: int = 2              # batches landing (fsyncing) at the same time
    max_batch_messages: int = 1000
    max_batch_bytes: int = 32 * 1024 * 1024
    max_connections: int = 64
    max_connections_per_peer: int = 16
    keep_rejected: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None    # mutual TLS: only clients with a certificate from this CA (PEM)
    allowed_peers: tuple[str, ...] = ()  # networks (CIDR) allowed to connect; empty: any


# -- durable landing ----------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LandingWriter:
    """Writes batches of messages as one landing file each: tmp file, fsync, rename, fsync dir."""

    def __init__(self, landing_dir: Path) -> None:
        self.mllp_dir = landing_dir / MLLP_DIR
        self._seq = itertools.count(1)
        self._ready_dirs: set[Path] = set()
        self._pid = os.getpid()

    def _day_dir(self, now: datetime) -> Path:
        day = self.mllp_dir / now.strftime("%Y%m%d")
        if day not in self._ready_dirs:
            for parent in (self.mllp_dir.parent, self.mllp_dir, day):
                if not parent.is_dir():
                    parent.mkdir(parents=True, exist_ok=True)
                    _fsync_dir(parent.parent)
            self._ready_dirs.add(day)
        return day

    def write_batch(self, messages: Sequence[bytes]) -> Path:
        now = datetime.now(UTC)
        day = self._day_dir(now)
        name = f"{now:%Y%m%dT%H%M%S%f}Z-{self._pid}-{next(self._seq):08d}.hl7"
        tmp, final = day / f".{name}.tmp", day / name
        data = b"".join(m + b"\n" for m in messages)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        os.close(fd)
        os.rename(tmp, final)
        _fsync_dir(day)
        return final

    def _rejected_path(self, reason: str) -> Path:
        now = datetime.now(UTC)
        folder = self.mllp_dir / REJECTED_DIR / now.strftime("%Y%m%d")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{now:%Y%m%dT%H%M%S%f}Z-{self._pid}-{next(self._seq):08d}-{reason}.bin"

    def keep_rejected(self, data: bytes, reason: str) -> Path:
        path = self._rejected_path(reason)
        path.write_bytes(data)
        return path

    def recover_unacked(self) -> int:
        """Move ``.tmp`` batch files left by a killed listener (its pid is gone) to ``_rejected/``: none of
        their messages was ACKed. Files of a listener still running on the same root are left alone."""
        moved = 0
        for tmp in self.mllp_dir.glob("[0-9]*/.*.hl7.tmp"):
            found = _TMP_PID.search(tmp.name)
            pid = int(found.group(1)) if found else -1
            # our own pid here means a previous incarnation (pids repeat in containers): we wrote nothing yet
            if found is None or (pid != self._pid and _alive(pid)):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.rename(tmp, self._rejected_path("unacked-after-crash"))
                moved += 1
        return moved


_TMP_PID = re.compile(r"Z-(\d+)-\d+\.hl7\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GroupCommitter:
    """Collects messages from all connections and lands them in batches on ``workers`` writer threads.

    While batches are being fsynced, new messages queue up and form the next batch, so the batch size
    adapts to the load; ``window`` adds a short wait to gather more when the committer was idle. With
    two or more workers a new batch does not wait for the previous fsync (the file system merges
    concurrent fsyncs into one journal commit), which matters when few senders each wait for their ACK.
    """

    def __init__(self, writer: LandingWriter, window: float, max_messages: int, max_bytes: int,
                 workers: int = 2) -> None:
        self.writer = writer
        self.window = window
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.landed_files = 0
        self._pending: list[tuple[bytes, asyncio.Future[Path]]] = []
        self._first_at = 0.0
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(workers)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="mllp-commit")
        self._task: asyncio.Task[None] | None = None
        self._commits: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mllp-group-commit")

    def submit(self, message: bytes) -> asyncio.Future[Path]:
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._first_at = time.monotonic()
        self._pending.append((message, future))
        self._wake.set()
        return future

    def _take_batch(self) -> list[tuple[bytes, asyncio.Future[Path]]]:
        """The next batch: queued messages of the first one's character-set class, in arrival order."""
        size = 0
        batch: list[tuple[bytes, asyncio.Future[Path]]] = []
        rest: list[tuple[bytes, asyncio.Future[Path]]] = []
        kind = charset_class(self._pending[0][0]) if self._pending else ""
        for item in self._pending:
            message = item[0]
            full = batch and (len(batch) >= self.max_messages or size + len(message) > self.max_bytes)
            if full or charset_class(message) != kind:
                rest.append(item)
                continue
            size += len(message)
            batch.append(item)
        self._pending = rest
        if self._pending:
            self._first_at = time.monotonic()
        else:
            self._wake.clear()
        return batch

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            delay = self._first_at + self.window - time.monotonic()
            if delay > 0 and len(self._pending) < self.max_messages:
                await asyncio.sleep(delay)
            await self._slots.acquire()      # while every worker is busy, the next batch keeps growing
            batch = self._take_batch()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._commit(batch))
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)

    async def _commit(self, batch: list[tuple[bytes, asyncio.Future[Path]]]) -> None:
        messages = [m for m, _ in batch]
        started = time.perf_counter()
        try:
            path = await asyncio.get_running_loop().run_in_executor(self._executor, self.writer.write_batch, messages)
        except Exception as exc:  # noqa: BLE001 - every waiting sender gets an AE instead
            log.error("could not land %d MLLP messages: %s", len(batch), exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            self._slots.release()
        took = time.perf_counter() - started
        metrics.MLLP_COMMIT_SECONDS.observe(took)
        if took > SLOW_COMMIT_SECONDS:
            log.warning("MLLP: landing %d messages took %.1fs (slow disk or fsync stall); ACKs waited",
                        len(batch), took)
        self.landed_files += 1
        metrics.MLLP_LANDED_FILES.inc()
        metrics.MLLP_LANDED_BYTES.inc(sum(len(m) for m in messages))
        metrics.MLLP_BATCH_SIZE.observe(len(batch))
        for _, fut in batch:
            if not fut.done():
                fut.set_result(path)

    async def close(self) -> None:
        """Land what is still queued (bounded wait), then stop."""
        deadline = time.monotonic() + 30
        while (self._pending or self._commits) and self._task is not None and not self._task.done() \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=True)


# -- server -------------------------------------------------------------------------------------

def tls_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """Server TLS (1.2+); with ``client_ca`` also mutual TLS: a client without a certificate signed by that CA
    fails the handshake."""
    for path, what in ((cert, "--tls-cert"), (key, "--tls-key"), (client_ca, "--tls-client-ca")):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"{what} {path} does not exist; point it at a PEM file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
        if client_ca is not None:
            context.load_verify_locations(cafile=str(client_ca))
            context.verify_mode = ssl.CERT_REQUIRED
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot load TLS certificate/key/CA ({exc.reason}); check --tls-cert, --tls-key and "
                          "--tls-client-ca") from None
    return context


def peer_networks(allowed: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(n, strict=False) for n in allowed]
    except ValueError as exc:
        raise ConfigError(f"--allow-peer: {exc}; give networks such as 10.20.0.0/16 or 192.0.2.7") from None


@dataclass
class _Pending:
    received_at: float
    ack: bytes | None = None
    msh: MshHeader | None = None
    future: asyncio.Future[Path] | None = None


@dataclass
class MllpServer:
    """The listener. ``await start()``, then ``await stop()``; :class:`BackgroundListener` runs it in a thread."""

    settings: Settings
    config: ListenerConfig = field(default_factory=ListenerConfig)
    port: int = field(default=0, init=False)
    _server: asyncio.Server | None = field(default=None, init=False)
    _committer: GroupCommitter | None = field(default=None, init=False)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    # connections waiting between frames: task -> (peer address, since when)
    _idle: dict[asyncio.Task[None], tuple[str, float]] = field(default_factory=dict, init=False)
    _peers: dict[asyncio.Task[None], str] = field(default_factory=dict, init=False)   # open connections
    _networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list, init=False)

    @property
    def landed_files(self) -> int:
        return self._committer.landed_files if self._committer else 0

    @property
    def writer(self) -> LandingWriter:
        assert self._committer is not None
        return self._committer.writer

    async def start(self) -> None:
        cfg = self.config
        if (cfg.tls_cert is None) != (cfg.tls_key is None):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        if cfg.tls_client_ca is not None and cfg.tls_cert is None:
            raise ConfigError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key as well")
        self._networks = peer_networks(cfg.allowed_peers)
        context = tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca) if cfg.tls_cert and cfg.tls_key else None
        self._committer = GroupCommitter(LandingWriter(self.settings.landing_dir), cfg.commit_window,
                                         cfg.max_batch_messages, cfg.max_batch_bytes, cfg.commit_workers)
        recovered = self._committer.writer.recover_unacked()
        if recovered:
            log.warning("MLLP: moved %d unfinished batch file(s) of a crashed listener to %s (never ACKed; "
                        "the senders resend them)", recovered, self._committer.writer.mllp_dir / REJECTED_DIR)
        self._committer.start()
        try:
            self._server = await asyncio.start_server(
                self._on_connect, cfg.host, cfg.port, ssl=context, limit=256 * 1024,
                ssl_handshake_timeout=cfg.read_timeout if context else None, reuse_address=True)
        except OSError as exc:
            await self._committer.close()
            raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port} ({exc.strerror or exc}); "
                              "choose another --port or --host") from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("MLLP listener on %s:%d%s, landing in %s", cfg.host, self.port,
                 " (mutual TLS)" if cfg.tls_client_ca else " (TLS)" if context else "", self.writer.mllp_dir)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._idle):    # nothing in flight on these connections: close them now
            task.cancel()
        if self._handlers:
            _, still = await asyncio.wait(self._handlers, timeout=grace)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        if self._committer is not None:
            await self._committer.close()

    def _admit(self, address: str) -> bool:
        """Room for a connection from ``address``: under both caps, or made by closing the longest-idle
        connection in the scope that is full (its sender reconnects; nothing of it is in flight)."""
        cfg = self.config
        scopes = [(len(self._peers) >= cfg.max_connections, None)]
        same = sum(1 for a in self._peers.values() if a == address)
        scopes.append((same >= cfg.max_connections_per_peer, address))
        for full, scope in scopes:
            if not full:
                continue
            idle = [(since, task) for task, (a, since) in self._idle.items() if scope is None or a == scope]
            if not idle:
                return False
            _, oldest = min(idle, key=lambda item: item[0])
            self._idle.pop(oldest, None)
            self._peers.pop(oldest, None)
            oldest.cancel()
            metrics.MLLP_MALFORMED.labels(kind="idle_evicted").inc()
        return True

    def _allowed(self, address: str) -> bool:
        if not self._networks:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self._networks)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        try:
            if not self._allowed(address):
                log.warning("MLLP: refusing %s: not in the allowed peer networks", address)
                metrics.MLLP_MALFORMED.labels(kind="peer_refused").inc()
                return
            if not self._admit(address):
                log.warning("MLLP: refusing %s: %d connections open (%d from it), none idle", address,
                            len(self._peers), sum(1 for a in self._peers.values() if a == address))
                metrics.MLLP_MALFORMED.labels(kind="connection_refused").inc()
                return
            self._peers[task] = address
            metrics.MLLP_CONNECTIONS.inc()
            metrics.MLLP_OPEN_CONNECTIONS.inc()
            try:
                await self._serve(reader, writer, peer, address)
            finally:
                self._peers.pop(task, None)
                metrics.MLLP_OPEN_CONNECTIONS.dec()
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object,
                     address: str) -> None:
        framer = MllpFramer(self.config.max_message_bytes)
        cut_reason = "disconnected mid-message"
        task = asyncio.current_task()
        assert task is not None
        frame_started: float | None = None
        try:
            while True:
                timeout = self.config.read_timeout if framer.in_frame else self.config.idle_timeout
                if framer.in_frame:
                    frame_started = frame_started or time.monotonic()
                    left = frame_started + self.config.frame_deadline - time.monotonic()
                    if left <= 0:
                        cut_reason = f"frame not complete within {self.config.frame_deadline:g}s"
                        log.warning("MLLP %s: closing: %s", peer, cut_reason)
                        break
                    timeout = min(self.config.read_timeout, left)
                else:
                    frame_started = None
                    self._idle[task] = (address, time.monotonic())
                try:
                    async with asyncio.timeout(timeout):  # cheaper than wait_for: no extra task per read
                        data = await reader.read(256 * 1024)
                except TimeoutError:
                    cut_reason = f"no data for {timeout:g}s mid-message"
                    log.warning("MLLP %s: closing after %gs without data", peer, timeout)
                    break
                finally:
                    self._idle.pop(task, None)
                if not data:
                    break
                received_at = time.perf_counter()
                pending = [self._accept(event, peer, received_at) for event in framer.feed(data)]
                acks = [await self._settle(p) for p in pending if p is not None]
                if acks:
                    writer.write(b"".join(frame(a) for a, _ in acks))
                    if writer.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                        async with asyncio.timeout(self.config.read_timeout):  # a client that never reads ACKs
                            await writer.drain()
                    sent = time.perf_counter()
                    for _, t0 in acks:
                        metrics.MLLP_ACK_LATENCY.observe(sent - t0)
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError) as exc:
            log.warning("MLLP %s: connection lost (%s)", peer, exc.__class__.__name__)
        finally:
            if framer.in_frame:
                self._framing_error(framer.cut(cut_reason), peer)

    def _accept(self, event: Frame | Garbage | Cut, peer: object, received_at: float) -> _Pending | None:
        if isinstance(event, Garbage):
            log.warning("MLLP %s: %d bytes outside an MLLP frame kept in %s, not acknowledged", peer, event.size,
                        REJECTED_DIR)
            metrics.MLLP_MALFORMED.labels(kind="outside_frame").inc()
            metrics.MLLP_DISCARDED_BYTES.inc(event.size)
            self._keep(event.data, "outside-frame")
            return None
        if isinstance(event, Cut):
            self._framing_error(event, peer)
            return None
        metrics.MLLP_RECEIVED.inc()
        message = event.payload.lstrip(LEADING_NOISE)
        try:
            msh = parse_msh(message)
        except Rejection as rej:
            return self._reject(event, rej.msh, rej, peer, received_at)
        if event.oversize:
            rej = Rejection("AR", "oversize", f"message of {event.size} bytes exceeds the limit of "
                            f"{self.config.max_message_bytes} bytes", "207")
            return self._reject(event, msh, rej, peer, received_at)
        assert self._committer is not None
        return _Pending(received_at, msh=msh, future=self._committer.submit(message))

    def _reject(self, event: Frame, msh: MshHeader | None, rej: Rejection, peer: object,
                received_at: float) -> _Pending:
        log.warning("MLLP %s: %s %s (%d bytes, control id %r)", peer, rej.ack_code, rej.text, event.size,
                    msh.control_id if msh else None)
        metrics.MLLP_REJECTED.labels(code=rej.ack_code, reason=rej.reason).inc()
        self._keep(event.payload, rej.reason + ("-head" if event.oversize else ""))
        return _Pending(received_at, ack=build_ack(msh, rej.ack_code, rej))

    def _framing_error(self, cut: Cut, peer: object) -> None:
        log.warning("MLLP %s: incomplete frame of %d bytes dropped, not acknowledged: %s",
                    peer, len(cut.partial), cut.reason)
        metrics.MLLP_MALFORMED.labels(kind="incomplete_frame").inc()
        self._keep(cut.partial, "incomplete")

    def _keep(self, data: bytes, reason: str) -> None:
        if not self.config.keep_rejected or not data or self._committer is None:
            return
        try:
            self.writer.keep_rejected(data, reason)
        except OSError as exc:
            log.error("MLLP: could not keep rejected bytes for forensics: %s", exc)

    async def _settle(self, pending: _Pending) -> tuple[bytes, float]:
        if pending.ack is not None:
            return pending.ack, pending.received_at
        assert pending.future is not None
        try:
            await pending.future
        except Exception:  # noqa: BLE001 - logged by the committer; the sender retries on AE
            metrics.MLLP_REJECTED.labels(code="AE", reason="landing_failed").inc()
            rej = Rejection("AE", "landing_failed", "message could not be stored durably; resend it", "207")
            return build_ack(pending.msh, "AE", rej), pending.received_at
        metrics.MLLP_ACKED.inc()
        return build_ack(pending.msh, "AA"), pending.received_at


# -- running it ---------------------------------------------------------------------------------

class BackgroundListener:
    """An :class:`MllpServer` on its own event loop thread (tests, notebooks): ``with BackgroundListener(...)``."""

    def __init__(self, settings: Settings, config: ListenerConfig | None = None) -> None:
        self.server = MllpServer(settings, config or ListenerConfig(port=0))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mllp-listener", daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def landed_files(self) -> int:
        return self.server.landed_files

    def __enter__(self) -> BackgroundListener:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(grace=2.0), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class FollowIngest(threading.Thread):
    """``--follow``: ingest new landing files into Bronze every ``interval`` seconds while files keep landing."""

    def __init__(self, settings: Settings, interval: float, landed_files: Callable[[], int]) -> None:
        super().__init__(name="mllp-follow", daemon=True)
        self.settings = settings
        self.interval = interval
        self.landed_files = landed_files
        self.stop_event = threading.Event()

    def run(self) -> None:
        ingested_upto = -1          # ingest once at start: files landed before a restart
        wait = self.interval
        while not self.stop_event.wait(wait):
            current = self.landed_files()
            if current == ingested_upto:
                continue
            try:
                with run_context("ingest", self.settings) as run:
                    result = ingest(self.settings, [], run)
            except Exception as exc:  # noqa: BLE001 - the listener must keep landing and acknowledging
                metrics.MLLP_FOLLOW_CYCLES.labels(outcome="failed").inc()
                wait = min(wait * 2, 300.0)
                log.error("--follow: ingestion failed (%s: %s); retrying in %gs", exc.__class__.__name__, exc, wait)
                continue
            metrics.MLLP_FOLLOW_CYCLES.labels(outcome="ok").inc()
            ingested_upto, wait = current, self.interval
            log.info("--follow: ingested new landing files: %s", result)


def serve(settings: Settings, config: ListenerConfig, metrics_port: int | None = None,
          follow: bool = False, follow_interval: float = 5.0,
          on_ready: Callable[[MllpServer], None] | None = None) -> None:
    """Run the listener until SIGINT/SIGTERM (the ``lakehouse listen`` command)."""
    if metrics_port is not None:
        metrics.start_metrics_server(metrics_port, config.host)

    async def main() -> None:
        server = MllpServer(settings, config)
        await server.start()
        if on_ready:
            on_ready(server)
        follower = FollowIngest(settings, follow_interval, lambda: server.landed_files) if follow else None
        if follower:
            follower.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.warning("MLLP listener stopping")
        await server.stop()
        if follower:
            follower.stop_event.set()
            await asyncio.to_thread(follower.join, 60)

    asyncio.run(main())

