"""MLLP load generator and client: concurrent senders that each send a message and wait for its ACK,
the way interface engines do (one message in flight per connection)."""

from __future__ import annotations

import asyncio
import ssl
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bronze.mllp_protocol import END, frame

MessageFactory = Callable[[int, int], bytes]


def sample_adt(sender: int, seq: int) -> bytes:
    """A realistic ADT^A01 (about 600 bytes) with the unique control id ``S<sender>-<seq>``."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    mrn = f"{sender:03d}{seq:07d}"
    segments = [
        f"MSH|^~\\&|EPIC|GENHOSP|LAKEHOUSE|GENHOSP|{now}||ADT^A01^ADT_A01|S{sender}-{seq}|P|2.5.1|||AL|NE",
        f"EVN|A01|{now}|||U1234^SMITH^JANE",
        f"PID|1||{mrn}^^^GENHOSP^MR~999-{seq % 100:02d}-{sender % 10000:04d}^^^USSSA^SS||DOE^JOHN^Q^^^^L||"
        f"19600101|M||2106-3^White^CDCREC|123 MAIN ST^^BOSTON^MA^02115^USA||^PRN^PH^^1^617^5551234",
        "PV1|1|I|4WEST^401^A^GENHOSP||||1234567^WELBY^MARCUS^^^DR|||MED||||7|||1234567^WELBY^MARCUS^^^DR|"
        f"IN||SELF|||||||||||||||||||GENHOSP||A|||{now}",
        "DG1|1||I50.9^Heart failure, unspecified^I10||" + now + "|A",
        "OBX|1|NM|8867-4^Heart rate^LN||72|/min^beats per minute^UCUM|60-100|N|||F",
    ]
    return ("\r".join(segments) + "\r").encode()


@dataclass
class _Stats:
    latencies: list[float] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    acked_ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def ack_fields(ack: bytes) -> tuple[str, str]:
    """(MSA-1 code, MSA-2 control id) of an ACK."""
    for segment in ack.strip(b"\x0b\x1c\r\n").split(b"\r"):
        if segment.startswith(b"MSA"):
            parts = segment.decode("latin-1").split(segment.decode("latin-1")[3])
            return parts[1], (parts[2] if len(parts) > 2 else "")
    return "", ""


async def send_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, message: bytes,
                   timeout: float = 10.0) -> bytes:
    """Send one framed message and return its ACK (frame bytes stripped)."""
    writer.write(frame(message))
    await writer.drain()
    ack = await asyncio.wait_for(reader.readuntil(END), timeout)
    return ack[ack.find(b"\x0b") + 1:-2]


async def _sender(host: str, port: int, sender: int, deadline: float, factory: MessageFactory, stats: _Stats,
                  ssl_context: ssl.SSLContext | None, max_messages: int | None, timeout: float) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=ssl_context, limit=1024 * 1024), timeout)
    except (OSError, TimeoutError) as exc:
        stats.errors.append(f"sender {sender}: connect failed: {exc!r}")
        return
    seq = 0
    try:
        while time.monotonic() < deadline and (max_messages is None or seq < max_messages):
            message = factory(sender, seq)
            t0 = time.perf_counter()
            ack = await send_one(reader, writer, message, timeout)
            stats.latencies.append(time.perf_counter() - t0)
            code, control_id = ack_fields(ack)
            stats.codes[code] = stats.codes.get(code, 0) + 1
            if code == "AA":
                stats.acked_ids.append(control_id)
            seq += 1
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        stats.errors.append(f"sender {sender} after {seq} messages: {exc!r}")
    finally:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 2)
        except (OSError, TimeoutError):
            pass


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run_load_async(host: str, port: int, senders: int, seconds: float,
                         message_factory: MessageFactory = sample_adt, *, ssl_context: ssl.SSLContext | None = None,
                         max_messages: int | None = None, timeout: float = 10.0) -> dict[str, Any]:
    stats = _Stats()
    start = time.monotonic()
    await asyncio.gather(*(
        _sender(host, port, i, start + seconds, message_factory, stats, ssl_context, max_messages, timeout)
        for i in range(senders)))
    elapsed = time.monotonic() - start
    lat = sorted(stats.latencies)
    return {
        "senders": senders,
        "seconds": round(elapsed, 3),
        "messages": len(lat),
        "messages_per_s": round(len(lat) / elapsed, 1) if elapsed else 0.0,
        "ack_codes": stats.codes,
        "latency_ms": {
            "p50": round(_percentile(lat, 0.50) * 1000, 3),
            "p90": round(_percentile(lat, 0.90) * 1000, 3),
            "p99": round(_percentile(lat, 0.99) * 1000, 3),
            "max": round(lat[-1] * 1000, 3) if lat else float("nan"),
            "mean": round(statistics.fmean(lat) * 1000, 3) if lat else float("nan"),
        },
        "acked_ids": stats.acked_ids,
        "errors": stats.errors,
    }


def run_load(host: str, port: int, senders: int, seconds: float,
             message_factory: MessageFactory = sample_adt, **options: Any) -> dict[str, Any]:
    """Run ``senders`` concurrent MLLP connections for ``seconds`` (or ``max_messages`` each); returns
    throughput, ACK latency percentiles (send to ACK received), ACK codes, ACKed control ids and errors."""
    return asyncio.run(run_load_async(host, port, senders, seconds, message_factory, **options))
