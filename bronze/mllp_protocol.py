"""MLLP and HL7 v2 ACK protocol pieces, pure (no I/O): the incremental deframer, the landed-file format,
MSH parsing and original-mode ACK building. The listener (``bronze.mllp``) does the I/O."""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

SB = b"\x0b"
EB = b"\x1c"
CR = b"\x0d"
END = EB + CR
BENIGN_OUTSIDE = b"\r\n\t "
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
_DEFAULT_ENCODING = "^~\\&"


# -- framing ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    payload: bytes      # the message, or its first bytes when oversize
    size: int           # the full payload size
    oversize: bool


@dataclass(frozen=True)
class Garbage:
    size: int           # bytes outside any frame (not counting whitespace between frames)
    data: bytes = b""   # those bytes, at most the framer's max_bytes (kept in _rejected/ for forensics)


@dataclass(frozen=True)
class Cut:
    partial: bytes      # what arrived of a frame that never ended
    reason: str


class MllpFramer:
    """Incremental MLLP deframer: feed it bytes as they arrive, get frames and framing errors back.

    Memory is bounded: past ``max_bytes`` a frame keeps only its first ``keep_head`` bytes (enough to
    answer with the sender's MSH) and the rest is skipped up to the end block, so the connection stays
    usable after an oversize message.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, keep_head: int = 64 * 1024) -> None:
        self.max_bytes = max_bytes
        self.keep_head = min(keep_head, max_bytes)
        self.in_frame = False
        self._buf = bytearray()
        self._size = 0
        self._oversize = False
        self._ends_with_eb = False

    def feed(self, data: bytes) -> list[Frame | Garbage | Cut]:
        events: list[Frame | Garbage | Cut] = []
        pos, n = 0, len(data)
        while pos < n:
            if not self.in_frame:
                start = data.find(SB, pos)
                outside = data[pos:] if start < 0 else data[pos:start]
                if outside.strip(BENIGN_OUTSIDE):
                    # e.g. the tail of a message that held 0x1C 0x0D: never ACKed, never silently dropped
                    events.append(Garbage(len(outside), bytes(outside[:self.max_bytes])))
                if start < 0:
                    break
                self._begin()
                pos = start + 1
                continue
            if self._ends_with_eb and data[pos:pos + 1] == CR:  # end block split across two reads
                events.append(self._finish(drop_last=True))
                pos += 1
                continue
            end = data.find(END, pos)
            restart = data.find(SB, pos, n if end < 0 else end)
            if restart >= 0:
                self._append(data[pos:restart])
                events.append(self.cut("new start block before the end of the frame"))
                self._begin()
                pos = restart + 1
            elif end < 0:
                self._append(data[pos:])
                break
            else:
                self._append(data[pos:end])
                events.append(self._finish(drop_last=False))
                pos = end + 2
        return events

    def cut(self, reason: str) -> Cut:
        """End the current incomplete frame (disconnect, timeout): it becomes a Cut, never a Frame."""
        partial = bytes(self._buf)
        self.in_frame = False
        self._buf = bytearray()
        return Cut(partial, reason)

    def _begin(self) -> None:
        self.in_frame = True
        self._buf = bytearray()
        self._size = 0
        self._oversize = False
        self._ends_with_eb = False

    def _append(self, piece: bytes) -> None:
        if not piece:
            return
        self._size += len(piece)
        self._ends_with_eb = piece.endswith(EB)
        if not self._oversize:
            self._buf += piece
            if len(self._buf) > self.max_bytes:
                self._oversize = True
                del self._buf[self.keep_head:]

    def _finish(self, drop_last: bool) -> Frame:
        if drop_last:
            self._size -= 1
            if not self._oversize:
                del self._buf[-1:]
        frame = Frame(bytes(self._buf), self._size, self._oversize or self._size > self.max_bytes)
        self.in_frame = False
        self._buf = bytearray()
        return frame


def frame(message: bytes) -> bytes:
    return SB + message + END


def split_landed(data: bytes) -> list[bytes]:
    """The exact messages of a landed file (see the module docstring for the format)."""
    starts = [m.start() for m in re.finditer(rb"(?:^|(?<=\n))MSH", data)]
    if not starts:  # an empty or cut file (a .tmp left by a kill before its first message)
        return []
    return [data[a:b - 1] for a, b in zip(starts, [*starts[1:], len(data)], strict=True)]


# -- MSH and ACK --------------------------------------------------------------------------------

class Rejection(Exception):
    """A message the listener will not accept; becomes an AR/AE ACK with an ERR segment."""

    def __init__(self, ack_code: str, reason: str, text: str, hl7_error: str, location: str = "",
                 msh: MshHeader | None = None) -> None:
        super().__init__(text)
        self.msh = msh                  # the header, when it parsed far enough to answer the sender
        self.ack_code = ack_code
        self.reason = reason            # short, for the metric label
        self.text = text
        self.hl7_error = hl7_error      # HL7 table 0357 code
        self.location = location        # ERL, e.g. MSH^1^10


@dataclass(frozen=True)
class MshHeader:
    field_sep: str
    encoding: str
    fields: tuple[str, ...]     # fields[i] is MSH-(i+1) for i >= 2 ("MSH", MSH-2, MSH-3, ...)

    def get(self, n: int) -> str:
        """MSH-n as it is written (still escaped)."""
        if n == 1:
            return self.field_sep
        return self.fields[n - 1] if n - 1 < len(self.fields) else ""

    @property
    def control_id(self) -> str:
        return self.get(10)

    @property
    def version(self) -> tuple[int, ...]:
        first = self.get(12).split(self.encoding[0])[0] if self.encoding else self.get(12)
        try:
            return tuple(int(p) for p in first.strip().split("."))
        except ValueError:
            return ()


def parse_msh(message: bytes) -> MshHeader:
    """The MSH segment of a message; raises :class:`Rejection` when the message cannot be accepted."""
    if not message.startswith(b"MSH"):
        raise Rejection("AR", "no_msh", "message does not start with an MSH segment", "100", "MSH^1")
    segment_end = re.search(rb"[\r\n]", message)
    text = message[:segment_end.start() if segment_end else len(message)].decode("latin-1")
    sep = text[3:4]
    if not sep or sep.isalnum() or sep.isspace():
        raise Rejection("AR", "bad_msh", "MSH-1 field separator is missing or invalid", "102", "MSH^1^1")
    fields = tuple(text.split(sep))
    encoding = fields[1] if len(fields) > 1 else ""
    # the same rules, in the same order, as Bronze's (bronze.hl7v2.parse_messages): a message the listener
    # acknowledges with AA is never one Bronze then quarantines
    if not 4 <= len(encoding) <= 5:
        raise Rejection("AR", "bad_msh", f"MSH-2 must hold 4 or 5 encoding characters, got {len(encoding)}", "102",
                        "MSH^1^2")
    if len(set(encoding)) != len(encoding) or any(c.isalnum() or c in (" ", sep) for c in encoding):
        raise Rejection("AR", "bad_msh", "MSH-2 encoding characters repeat or are invalid", "102", "MSH^1^2")
    msh = MshHeader(sep, encoding, fields)
    if not msh.get(9).split(encoding[0])[0]:
        raise Rejection("AR", "no_message_type", "MSH-9 message type is required", "101", "MSH^1^9", msh)
    if not msh.control_id:
        raise Rejection("AR", "no_control_id", "MSH-10 message control id is required", "101", "MSH^1^10", msh)
    if not msh.get(12).split(encoding[0])[0]:
        raise Rejection("AR", "no_version", "MSH-12 version id is required", "101", "MSH^1^12", msh)
    return msh


def charset_class(message: bytes) -> str:
    """``utf-8`` when the message is valid UTF-8, else ``iso-8859-1``: how landing will read a file of such
    messages. A landed file holds messages of one class only, so one sender's Latin-1 never garbles another's
    UTF-8."""
    try:
        message.decode("utf-8")
    except UnicodeDecodeError:
        return "iso-8859-1"
    return "utf-8"


_ack_ids = itertools.count(1)


def _escape(text: str, sep: str, encoding: str) -> str:
    esc = encoding[2] if len(encoding) > 2 else "\\"
    names = dict(zip(encoding, "SRET", strict=False))
    out = text.replace(esc, f"{esc}E{esc}").replace(sep, f"{esc}F{esc}")
    for char, name in names.items():
        if char != esc:
            out = out.replace(char, f"{esc}{name}{esc}")
    return out


def build_ack(msh: MshHeader | None, ack_code: str, rejection: Rejection | None = None) -> bytes:
    """An original-mode ACK for ``msh``: sender and receiver swapped, MSA-2 = its control id, same
    version and encoding characters; ERR segment (v2.3/2.4 ERR-1, v2.5+ ERR-2..4) when rejecting."""
    sep = msh.field_sep if msh else "|"
    enc = msh.encoding if msh else _DEFAULT_ENCODING
    comp = enc[0]
    version = msh.version if msh and msh.version else (2, 5)
    trigger = msh.get(9).split(comp)[1] if msh and len(msh.get(9).split(comp)) > 1 else ""
    msg_type = comp.join(["ACK", trigger, "ACK"] if version >= (2, 3, 1) else ["ACK", trigger]) if trigger else "ACK"
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S.%f")[:-2] + "+0000"
    control = f"L{time.time_ns() // 1_000_000 % 10**13:013d}{next(_ack_ids) % 100_000:05d}"
    if msh:
        header = ["MSH", enc, msh.get(5), msh.get(6), msh.get(3), msh.get(4), stamp, "", msg_type, control,
                  msh.get(11), msh.get(12) or "2.5"]
    else:  # nothing to answer to: say who we are
        header = ["MSH", enc, "LAKEHOUSE", "", "", "", stamp, "", msg_type, control, "P", "2.5"]
    msa = ["MSA", ack_code, msh.control_id if msh else ""]
    segments = [sep.join(header)]
    if rejection is not None:
        text = _escape(rejection.text, sep, enc)
        msa.append(text)
        sub = enc[3] if len(enc) > 3 else "&"
        loc = rejection.location.replace("^", comp)
        if version >= (2, 5):
            code = comp.join([rejection.hl7_error, text, "HL70357"])
            err = sep.join(["ERR", "", loc, code, "E"])
        elif version >= (2, 3):
            parts = (loc.split(comp) + ["", "", ""])[:3]
            err = sep.join(["ERR", comp.join([*parts, sub.join([rejection.hl7_error, text, "HL70357"])])])
        else:
            err = ""
        segments.append(sep.join(msa))
        if err:
            segments.append(err)
    else:
        segments.append(sep.join(msa))
    return ("\r".join(segments) + "\r").encode("latin-1", errors="replace")
