"""The MLLP listener over real sockets: every ACKed message is durably landed exactly once, nothing else is."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import hl7
import pytest
from certificates import authority, client_certificate, self_signed
from helpers import clean_env

from bronze.mllp import BackgroundListener, FollowIngest, ListenerConfig
from bronze.mllp_load import ack_fields, run_load
from bronze.mllp_protocol import (
    END,
    SB,
    Cut,
    Frame,
    Garbage,
    MllpFramer,
    Rejection,
    build_ack,
    frame,
    parse_msh,
    split_landed,
)
from lakehouse import metrics
from lakehouse.config import Settings

pytestmark = pytest.mark.timeout(60)


def message(control_id: str, version: str = "2.5.1", extra: str = "") -> bytes:
    return (f"MSH|^~\\&|EPIC|GENHOSP|LAKEHOUSE|RESEARCH|20260101120000||ADT^A01^ADT_A01|{control_id}|P|{version}\r"
            f"PID|1||MRN{control_id}^^^GENHOSP^MR||DOE^JANE{extra}\r").encode()


@pytest.fixture()
def lh(make_lakehouse: Callable[..., Settings]) -> Settings:
    return make_lakehouse(attach_engine=False)


@pytest.fixture()
def listener(lh: Settings) -> Iterator[BackgroundListener]:
    with BackgroundListener(lh, ListenerConfig(port=0, read_timeout=5.0, max_message_bytes=64 * 1024,
                                               max_connections=256, max_connections_per_peer=256)) as server:
        yield server


def landed(settings: Settings) -> list[bytes]:
    files = sorted(p for p in (settings.landing_dir / "mllp").glob("[0-9]*/[0-9]*.hl7"))
    return [m for f in files for m in split_landed(f.read_bytes())]


def rejected_files(settings: Settings) -> list[Path]:
    return sorted((settings.landing_dir / "mllp" / "_rejected").rglob("*.bin"))


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def read_ack(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(END):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a complete ACK: {data!r}")
        data += chunk
    assert data.startswith(SB)
    return data[1:-2]


def closed_without_ack(sock: socket.socket) -> bool:
    """The listener closed the connection (orderly or by reset) and sent nothing."""
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def metric(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# -- framing and ACK (no sockets) ----------------------------------------------------------------

@pytest.mark.fast
def test_framer_handles_split_end_block_garbage_restart_and_oversize() -> None:
    framer = MllpFramer(max_bytes=100, keep_head=20)
    assert framer.feed(b"\r\n" + SB + b"MSH|one\x1c") == []   # whitespace between frames is not garbage
    assert framer.feed(b"\r") == [Frame(b"MSH|one", 7, False)]
    events = framer.feed(b"junk" + SB + b"MSH|cut" + SB + b"MSH|two" + END)
    assert events == [Garbage(4, b"junk"), Cut(b"MSH|cut", "new start block before the end of the frame"),
                      Frame(b"MSH|two", 7, False)]
    big = b"MSH|" + b"x" * 300
    events = [e for i in range(0, len(big), 64) for e in framer.feed(SB * (i == 0) + big[i:i + 64])]
    events += framer.feed(END + SB + b"MSH|after" + END)
    assert events == [Frame(big[:20], len(big), True), Frame(b"MSH|after", 9, False)]
    framer.feed(SB + b"MSH|partial")
    assert framer.in_frame and framer.cut("disconnected") == Cut(b"MSH|partial", "disconnected")


@pytest.mark.fast
def test_split_landed_recovers_exact_messages() -> None:
    one, two = message("A1"), b"MSH|^~\\&|X|Y|||1||ORU^R01|A2|P|2.3\r\nOBX|1|TX|||a\r\n"
    assert split_landed(one + b"\n" + two + b"\n") == [one, two]
    assert split_landed(b"") == [] and split_landed(b"\x00\x00") == []  # a .tmp cut before its first message


@pytest.mark.fast
def test_ack_swaps_sender_and_receiver_and_adds_err_per_version() -> None:
    msh = parse_msh(message("CTRL-9"))
    ack = hl7.parse(build_ack(msh, "AA").decode())
    assert str(ack.segment("MSH")(3)) == "LAKEHOUSE" and str(ack.segment("MSH")(4)) == "RESEARCH"
    assert str(ack.segment("MSH")(5)) == "EPIC" and str(ack.segment("MSH")(6)) == "GENHOSP"
    assert str(ack.segment("MSH")(9)) == "ACK^A01^ACK" and str(ack.segment("MSH")(12)) == "2.5.1"
    assert str(ack.segment("MSA")(1)) == "AA" and str(ack.segment("MSA")(2)) == "CTRL-9"
    assert len(ack) == 2

    rej = Rejection("AR", "oversize", "too big | really", "207")
    v25 = hl7.parse(build_ack(msh, "AR", rej).decode())
    assert str(v25.segment("ERR")(3)(0)(0)) == "207" and str(v25.segment("ERR")(4)) == "E"
    assert "\\F\\" in str(v25.segment("MSA")(3))    # the field separator in the text is escaped
    v23 = build_ack(parse_msh(message("C23", "2.3")), "AR", rej).decode()
    assert re.search(r"\rERR\|\^\^\^207&too big \\F\\ really&HL70357\r$", v23)
    v22 = build_ack(parse_msh(message("C22", "2.2")), "AR", rej).decode()
    assert "ERR" not in v22 and "|ACK^A01|" in v22
    no_msh = hl7.parse(build_ack(None, "AR", rej).decode())
    assert str(no_msh.segment("MSH")(3)) == "LAKEHOUSE" and str(no_msh.segment("MSA")(2)) == ""


# -- over sockets ---------------------------------------------------------------------------------

@pytest.mark.fast
def test_concurrent_senders_all_acked_and_landed_exactly_once(listener: BackgroundListener, lh: Settings) -> None:
    sent: dict[str, bytes] = {}

    def factory(sender: int, seq: int) -> bytes:
        sent[f"C{sender}-{seq}"] = message(f"C{sender}-{seq}")
        return sent[f"C{sender}-{seq}"]

    acked_before = metric("lakehouse_mllp_messages_acked_total")
    result = run_load("127.0.0.1", listener.port, senders=8, seconds=30, message_factory=factory, max_messages=50)
    assert result["errors"] == [] and result["ack_codes"] == {"AA": 400}
    assert sorted(result["acked_ids"]) == sorted(sent)
    got = landed(lh)
    assert sorted(got) == sorted(sent.values())              # exact bytes, each exactly once
    assert metric("lakehouse_mllp_messages_acked_total") - acked_before == 400
    assert not list((lh.landing_dir / "mllp").rglob(".*.tmp"))


@pytest.mark.fast
def test_many_simultaneous_connections(listener: BackgroundListener, lh: Settings) -> None:
    result = run_load("127.0.0.1", listener.port, senders=200, seconds=30, max_messages=2)
    assert result["errors"] == [] and result["ack_codes"] == {"AA": 400}
    assert len(landed(lh)) == 400 == len(set(landed(lh)))


@pytest.mark.fast
def test_garbage_outside_frames_is_discarded_and_connection_keeps_working(listener: BackgroundListener,
                                                                          lh: Settings) -> None:
    before = metric("lakehouse_mllp_malformed_frames_total", kind="outside_frame")
    with connect(listener.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n" + frame(message("G1")))
        assert ack_fields(read_ack(sock)) == ("AA", "G1")
        sock.sendall(SB + message("CUT1")[:40] + SB + message("G2") + b"\x1c")  # restart; split end block
        time.sleep(0.05)
        sock.sendall(b"\r")
        assert ack_fields(read_ack(sock)) == ("AA", "G2")
    assert landed(lh) == [message("G1"), message("G2")]
    assert metric("lakehouse_mllp_malformed_frames_total", kind="outside_frame") == before + 1
    kept = {p.name.rsplit("-", 1)[-1]: p.read_bytes() for p in rejected_files(lh)}
    assert kept == {"incomplete.bin": message("CUT1")[:40], "frame.bin": b"GET / HTTP/1.0\r\n\r\n"}


@pytest.mark.fast
def test_client_that_disconnects_mid_message_is_never_acked_or_landed(listener: BackgroundListener,
                                                                      lh: Settings) -> None:
    with connect(listener.port) as sock:
        sock.sendall(SB + message("HALF")[:50])
    with connect(listener.port) as sock:
        sock.sendall(frame(message("WHOLE")))
        assert ack_fields(read_ack(sock)) == ("AA", "WHOLE")
    deadline = time.monotonic() + 5
    while not rejected_files(lh) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert landed(lh) == [message("WHOLE")]
    assert [p.name.endswith("-incomplete.bin") for p in rejected_files(lh)] == [True]


@pytest.mark.fast
def test_slow_client_mid_message_is_timed_out(lh: Settings) -> None:
    with BackgroundListener(lh, ListenerConfig(port=0, read_timeout=0.3)) as server, connect(server.port) as sock:
        sock.sendall(SB + message("SLOW")[:30])
        t0 = time.monotonic()
        assert sock.recv(100) == b""                 # the listener closes the connection, sends no ACK
        assert time.monotonic() - t0 < 3
    assert landed(lh) == []


@pytest.mark.fast
def test_stop_closes_idle_connections_at_once(lh: Settings) -> None:
    server = BackgroundListener(lh, ListenerConfig(port=0)).__enter__()
    with connect(server.port) as sock:
        sock.sendall(frame(message("IDLE")))
        assert ack_fields(read_ack(sock)) == ("AA", "IDLE")
        t0 = time.monotonic()
        server.__exit__(None, None, None)
        assert time.monotonic() - t0 < 1.5                  # not the 2 s grace for connections mid-message
        assert sock.recv(10) == b""


@pytest.mark.parametrize(("payload", "code", "control_id", "reason"), [
    (b"PID|1||123\r", "AR", "", "no_msh"),
    (b"MSH\r", "AR", "", "bad_msh"),
    (b"MSH|AB|EPIC|H|||2026||ADT^A01|X1|P|2.5\r", "AR", "", "bad_msh"),
    (b"MSH|^~\\&|EPIC|H|||2026||ADT^A01||P|2.5\r", "AR", "", "no_control_id"),
    (b"MSH|^~\\&|EPIC|H|||2026||ADT^A01|NOVER|P|\r", "AR", "NOVER", "no_version"),
    (b"MSH|^~|EPIC|H|||2026||ADT^A01|SHORT|P|2.5\r", "AR", "", "bad_msh"),
    (message("BIG", extra="x" * 70_000), "AR", "BIG", "oversize"),
])
@pytest.mark.fast
def test_unacceptable_messages_get_ar_and_are_not_landed(listener: BackgroundListener, lh: Settings,
                                                         payload: bytes, code: str, control_id: str,
                                                         reason: str) -> None:
    before = metric("lakehouse_mllp_messages_rejected_total", code=code, reason=reason)
    with connect(listener.port) as sock:
        sock.sendall(frame(payload))
        ack = read_ack(sock)
        assert ack_fields(ack) == (code, control_id)
        assert b"\rERR|" in ack
        sock.sendall(frame(message("NEXT")))                  # the connection stays usable
        assert ack_fields(read_ack(sock)) == ("AA", "NEXT")
    assert landed(lh) == [message("NEXT")]
    assert metric("lakehouse_mllp_messages_rejected_total", code=code, reason=reason) == before + 1


@pytest.mark.fast
def test_tls_round_trip(lh: Settings, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    client = ssl.create_default_context(cafile=str(cert))
    with BackgroundListener(lh, ListenerConfig(port=0, tls_cert=cert, tls_key=key)) as server:
        result = run_load("127.0.0.1", server.port, senders=2, seconds=30, max_messages=5, ssl_context=client)
        assert result["ack_codes"] == {"AA": 10} and result["errors"] == []
        with connect(server.port) as plain:                 # a plaintext client gets no ACK
            plain.sendall(frame(message("PLAIN")))
            with pytest.raises((ConnectionError, TimeoutError, OSError)):
                read_ack(plain)
    assert len(landed(lh)) == 10


def _lakehouse_listen(root: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-m", "lakehouse_app.cli", "--root", str(root), "listen", "--port", "0",
                             *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=clean_env())
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:                               # log lines, then "listening for MLLP on HOST:PORT"
        lines.append(line)
        found = re.search(r"listening for MLLP on [\d.]+:(\d+)", line)
        if found:
            break
    else:
        proc.kill()
        pytest.fail(f"listener did not start: {''.join(lines)}")
    threading.Thread(target=proc.stderr.read, daemon=True).start()   # keep the pipe from filling up
    return proc, int(found.group(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kill_9_loses_no_acked_message(tmp_path: Path) -> None:
    root = tmp_path / "lh"
    metrics_port = _free_port()
    proc, port = _lakehouse_listen(root, "--metrics-port", str(metrics_port))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            assert "lakehouse_mllp_messages_acked_total" in resp.read().decode()
        result: dict[str, object] = {}
        burst = threading.Thread(target=lambda: result.update(
            run_load("127.0.0.1", port, senders=8, seconds=8, timeout=3)))
        burst.start()
        deadline = time.monotonic() + 10                       # kill once the burst is well under way
        while len(list((root / "landing" / "mllp").glob("[0-9]*/*.hl7"))) < 50 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        burst.join(timeout=20)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    acked = result["acked_ids"]
    assert isinstance(acked, list) and len(acked) >= 50, result
    assert result["errors"], "the senders should have seen the listener die"
    landed_ids = [parse_msh(m).control_id for f in (root / "landing" / "mllp").glob("[0-9]*/[0-9]*.hl7")
                  for m in split_landed(f.read_bytes())]
    assert set(acked) <= set(landed_ids)
    assert len(landed_ids) == len(set(landed_ids))
    tmps = list((root / "landing" / "mllp").rglob(".*.tmp"))
    for tmp in tmps:                                            # left by the kill: only never-ACKed messages
        assert not set(acked) & {parse_msh(m).control_id for m in split_landed(tmp.read_bytes()) if m}
    if not tmps:                                                # the kill fell between two commits: make one
        day = next((root / "landing" / "mllp").glob("[0-9]*"))
        tmps = [day / f".20260101T000000000000Z-{proc.pid}-99999999.hl7.tmp"]
        tmps[0].write_bytes(message("NEVER-ACKED") + b"\n")

    # a restarted listener moves the dead one's unfinished batch to _rejected/ and goes on
    proc, port = _lakehouse_listen(root)
    try:
        with connect(port) as sock:
            sock.sendall(frame(message("AFTER-RESTART")))
            assert ack_fields(read_ack(sock)) == ("AA", "AFTER-RESTART")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert not list((root / "landing" / "mllp").rglob(".*.tmp"))
    recovered = list((root / "landing" / "mllp" / "_rejected").rglob("*-unacked-after-crash.bin"))
    assert len(recovered) == len(tmps)


def test_listen_on_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        done = subprocess.run([sys.executable, "-m", "lakehouse_app.cli", "--root", str(tmp_path), "listen", "--port",
                               str(busy.getsockname()[1])], capture_output=True, text=True, env=clean_env(), timeout=30)
    assert done.returncode == 2 and "cannot listen on 127.0.0.1" in done.stderr, done.stderr


@pytest.mark.fast
def test_landing_failure_gets_ae_and_a_retry_succeeds(listener: BackgroundListener, lh: Settings) -> None:
    day = lh.landing_dir / "mllp" / dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    day.parent.mkdir(parents=True)
    day.write_text("a file where the day folder should be")     # every write fails
    with connect(listener.port) as sock:
        sock.sendall(frame(message("RETRY")))
        ack = read_ack(sock)
        assert ack_fields(ack) == ("AE", "RETRY") and b"\rERR|" in ack
        day.unlink()
        sock.sendall(frame(message("RETRY")))                     # the sender resends on AE
        assert ack_fields(read_ack(sock)) == ("AA", "RETRY")
    assert landed(lh) == [message("RETRY")]


# -- into Bronze ----------------------------------------------------------------------------------

def test_follow_ingests_acked_messages_into_bronze(settings: Settings, catalog: object) -> None:
    with BackgroundListener(settings, ListenerConfig(port=0)) as server:
        result = run_load("127.0.0.1", server.port, senders=4, seconds=30, max_messages=25)
        assert result["ack_codes"] == {"AA": 100}
        follower = FollowIngest(settings, 0.05, lambda: server.landed_files)
        outcome = "ok"
        before = metric("lakehouse_mllp_follow_cycles_total", outcome=outcome)
        follower.start()
        deadline = time.monotonic() + 40
        while metric("lakehouse_mllp_follow_cycles_total", outcome=outcome) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        follower.stop_event.set()
        follower.join(timeout=30)
    assert metric("lakehouse_mllp_follow_cycles_total", outcome=outcome) > before
    rows = catalog.read("bronze.hl7v2_messages").select("message_control_id").collect()  # type: ignore[attr-defined]
    assert set(result["acked_ids"]) <= {r["message_control_id"] for r in rows}


# -- bounds, authentication and encodings ---------------------------------------------------------

@pytest.mark.fast
def test_idle_connections_do_not_lock_out_a_working_sender(lh: Settings) -> None:
    config = ListenerConfig(port=0, max_connections=4, max_connections_per_peer=4)
    with BackgroundListener(lh, config) as server:
        idle = [connect(server.port) for _ in range(4)]
        time.sleep(0.2)                                      # all four are open and silent
        with connect(server.port) as sender:
            sender.sendall(frame(message("FIFTH")))
            assert ack_fields(read_ack(sender)) == ("AA", "FIFTH")
        assert closed_without_ack(idle[0])                   # the longest-idle connection made room
        for sock in idle:
            sock.close()
    assert landed(lh) == [message("FIFTH")]


@pytest.mark.fast
def test_a_frame_trickled_byte_by_byte_is_cut_at_the_frame_deadline(lh: Settings) -> None:
    config = ListenerConfig(port=0, read_timeout=5.0, frame_deadline=1.0)
    payload = SB + message("LORIS")
    with BackgroundListener(lh, config) as server, connect(server.port) as sock:
        t0 = time.monotonic()
        closed = False
        for byte in payload:                                 # each byte well inside the read timeout
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - t0 > 4:
                break
        if not closed:
            sock.settimeout(3)
            assert closed_without_ack(sock)
        assert time.monotonic() - t0 < 4
    assert landed(lh) == []
    assert [p.name.endswith("-incomplete.bin") for p in rejected_files(lh)] == [True]


@pytest.mark.fast
def test_end_block_inside_a_message_keeps_the_tail(listener: BackgroundListener, lh: Settings) -> None:
    head = b"MSH|^~\\&|EPIC|GENHOSP|LAKEHOUSE|RESEARCH|20260101120000||ORU^R01|EB1|P|2.5.1\r"
    tail = b"OBX|1|TX|11502-2^Lab report^LN||text with a stray end block\r"
    with connect(listener.port) as sock:
        sock.sendall(SB + head + END + tail + END)
        assert ack_fields(read_ack(sock)) == ("AA", "EB1")
        sock.sendall(frame(message("AFTER")))
        assert ack_fields(read_ack(sock)) == ("AA", "AFTER")
    assert landed(lh) == [head, message("AFTER")]
    assert [p.read_bytes() for p in rejected_files(lh)] == [tail + END]


@pytest.mark.fast
def test_latin1_and_utf8_senders_never_share_a_landed_file(lh: Settings) -> None:
    utf8 = message("U1", extra="É").replace(b"\xc3\x89", "É".encode())
    latin1 = message("L1").replace(b"JANE", "JOSÉ".encode("latin-1"))
    config = ListenerConfig(port=0, commit_window=0.2)      # both arrive inside one group-commit window
    with BackgroundListener(lh, config) as server, connect(server.port) as a, connect(server.port) as b:
        a.sendall(frame(utf8))
        b.sendall(frame(latin1))
        assert ack_fields(read_ack(a)) == ("AA", "U1")
        assert ack_fields(read_ack(b)) == ("AA", "L1")
    files = sorted((lh.landing_dir / "mllp").glob("[0-9]*/[0-9]*.hl7"))
    assert sorted(split_landed(f.read_bytes()) for f in files) == sorted([[utf8], [latin1]])


@pytest.mark.fast
def test_mutual_tls_refuses_clients_without_an_accepted_certificate(lh: Settings, tmp_path: Path) -> None:
    server_cert, server_key = self_signed(tmp_path)
    senders_ca = authority(tmp_path, "interface-engines")
    other_ca = authority(tmp_path, "someone-else")
    good = client_certificate(tmp_path, senders_ca, "mirth-prod")
    bad = client_certificate(tmp_path, other_ca, "intruder")
    config = ListenerConfig(port=0, read_timeout=2.0, tls_cert=server_cert, tls_key=server_key,
                            tls_client_ca=senders_ca.path)

    def send(client_cert: tuple[Path, Path] | None, control_id: str) -> tuple[str, str]:
        context = ssl.create_default_context(cafile=str(server_cert))
        if client_cert is not None:
            context.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as sock:
            sock.sendall(frame(message(control_id)))
            data = b""
            while not data.endswith(END):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed without an ACK")
                data += chunk
            return ack_fields(data[1:-2])

    with BackgroundListener(lh, config) as server:
        assert send(good, "MTLS-OK") == ("AA", "MTLS-OK")
        for cert, cid in ((None, "NO-CERT"), (bad, "WRONG-CA")):
            with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
                send(cert, cid)
    assert landed(lh) == [message("MTLS-OK")]


@pytest.mark.fast
def test_peers_outside_the_allow_list_are_refused(lh: Settings) -> None:
    with BackgroundListener(lh, ListenerConfig(port=0, allowed_peers=("10.0.0.0/8",))) as server, \
            connect(server.port) as sock:
        sock.sendall(frame(message("DENIED")))
        assert closed_without_ack(sock)
    with BackgroundListener(lh, ListenerConfig(port=0, allowed_peers=("127.0.0.0/8",))) as server, \
            connect(server.port) as sock:
        sock.sendall(frame(message("ALLOWED")))
        assert ack_fields(read_ack(sock)) == ("AA", "ALLOWED")
    assert landed(lh) == [message("ALLOWED")]


def test_the_listener_acknowledges_exactly_what_bronze_accepts(settings: Settings, catalog: object) -> None:
    """Every header variant: AA from the listener if and only if Bronze loads the message (not quarantines it)."""
    variants = {
        "ok": message("V-OK"),
        "no-version": b"MSH|^~\\&|EPIC|H|||2026||ADT^A01|V-NOVER|P|\rPID|1\r",
        "short-encoding": b"MSH|^~|EPIC|H|||2026||ADT^A01|V-SHORT|P|2.5\rPID|1\r",
        "repeated-encoding": b"MSH|^^\\&|EPIC|H|||2026||ADT^A01|V-REP|P|2.5\rPID|1\r",
        "no-type": b"MSH|^~\\&|EPIC|H|||2026||^A01|V-NOTYPE|P|2.5\rPID|1\r",
        "no-control-id": b"MSH|^~\\&|EPIC|H|||2026||ADT^A01||P|2.5\rPID|1\r",
        "separator-in-encoding": b"MSH|^~|&|EPIC|H|||2026||ADT^A01|V-SEP|P|2.5\rPID|1\r",
        "five-encoding": b"MSH|^~\\&#|EPIC|H|||2026||ADT^A01|V-FIVE|P|2.7\rPID|1\r",
    }
    listener_accepts = {}
    for name, payload in variants.items():
        try:
            parse_msh(payload)
            listener_accepts[name] = True
        except Rejection:
            listener_accepts[name] = False
    inbox = settings.landing_dir / "variants"
    inbox.mkdir(parents=True)
    for name, payload in variants.items():
        (inbox / f"{name}.hl7").write_bytes(payload)
    from bronze.job import ingest
    from lakehouse.runlog import Run

    ingest(settings, [], Run("ingest", settings))
    loaded = {Path(r["source_file"]).stem for r in
              catalog.read("bronze.hl7v2_messages").select("source_file").collect()}  # type: ignore[attr-defined]
    bronze_accepts = {name: name in loaded for name in variants}
    assert bronze_accepts == listener_accepts
    assert listener_accepts["ok"] and listener_accepts["five-encoding"] and not listener_accepts["no-version"]
