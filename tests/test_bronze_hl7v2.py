"""HL7 v2 landing -> Bronze: fixtures, splitting edge cases, segment/field parsing with escapes."""

from __future__ import annotations

import re
from pathlib import Path

from pyspark.sql import functions as F

from bronze.job import ingest
from lakehouse import hl7v2
from lakehouse.runlog import Run


def _ingest(settings, paths):  # noqa: ANN001, ANN202
    return ingest(settings, paths, Run("ingest", settings))


def _count_messages(path: Path) -> int:
    text = path.read_bytes().decode("utf-8").lstrip("\ufeff")
    segments = re.split(r"\r\n|\r|\n", re.sub("[\x0b\x1c\ufeff]", "", text))
    return sum(1 for s in segments if s.startswith("MSH"))


def test_every_fixture_message_is_in_bronze_or_quarantine(settings, catalog, fixtures_dir) -> None:
    src = fixtures_dir / "hl7v2"
    expected = sum(_count_messages(p) for p in src.rglob("*.hl7"))
    report = _ingest(settings, [src])["hl7v2"]
    bronze = catalog.read("bronze.hl7v2_messages")
    quarantine = catalog.read("quarantine.hl7v2")
    q_msgs = quarantine.filter(~F.col("reason").startswith("segments outside")).filter(
        ~F.col("reason").startswith("text before"))
    # each message once: in Bronze (duplicates by content counted, stored once) or in quarantine
    assert report["bronze"] + report["duplicates"] + q_msgs.count() == expected
    assert report["received"] == report["bronze"] + report["duplicates"] + report["quarantined"]
    assert bronze.count() == report["bronze"] == bronze.select("content_hash").distinct().count()
    assert q_msgs.select("source_file", "position").distinct().count() == q_msgs.count()
    rows = bronze.select("raw", "message_type", "version", "content_hash").collect()
    assert all(r.raw.startswith("MSH") and "\n" not in r.raw and "\x0b" not in r.raw for r in rows)
    assert all(r.message_type and r.version for r in rows)
    import hashlib
    assert all(hashlib.sha256(r.raw.encode()).hexdigest() == r.content_hash for r in rows)
    reasons = {r.reason for r in quarantine.select("reason").collect()}
    assert "MSH-2 encoding characters are missing" in reasons
    assert any(r.startswith("segments outside any message (no MSH) after FHS") for r in reasons)


def test_splitting_separators_bom_mllp_batches_and_delimiters(settings, catalog, tmp_path: Path) -> None:
    inbox = tmp_path / "feed"
    inbox.mkdir()
    m1 = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240102030405.12+0100||ORU^R01^ORU_R01|C1|P|2.5.1\rPID|1||123^^^H^MR||DOE^JANE"
    m2 = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|202401020304||ADT^A01|C2|P|2.3\rPV1|1|I"
    m3 = "MSH#$%\\!#APP#FAC#R#F#20240101##ADT$A08#C3#P#2.4\rPID#1##77$$$H##ROE$JOHN"
    content = ("\ufeff" + m1.replace("\r", "\r\n") + "\r\n" + "\x0b" + m2.replace("\r", "\n") + "\x1c\r"
               + "FHS|^~\\&|X\rBHS|^~\\&|X\r" + m3 + "\rBTS|1\rFTS|1\n")
    (inbox / "mixed.dat").write_bytes(content.encode("utf-8"))
    (inbox / "nomsh.txt").write_text("PID|1||123\rPV1|1|I\r")
    (inbox / "_ignored.hl7").write_text(m1)
    report = _ingest(settings, [inbox])
    assert report["hl7v2"] == {"received": 3, "bronze": 3, "quarantined": 0, "duplicates": 0}
    assert report["unknown"]["quarantined"] == 1
    rows = {r.message_control_id: r for r in catalog.read("bronze.hl7v2_messages").collect()}
    assert set(rows) == {"C1", "C2", "C3"}
    data = content.encode("utf-8")
    for r in rows.values():
        assert data[r.byte_offset:r.byte_offset + 3] == b"MSH"
        assert "\r\n" not in r.raw and "\x1c" not in r.raw
    assert rows["C1"].raw == m1 and rows["C2"].raw == m2 and rows["C3"].raw == m3
    assert [rows[c].position for c in ("C1", "C2", "C3")] == [0, 1, 2]
    assert (rows["C1"].message_type, rows["C1"].trigger_event, rows["C1"].message_structure) == ("ORU", "R01",
                                                                                                  "ORU_R01")
    assert rows["C1"].message_ts.isoformat().startswith("2024-01-02T02:04:05.12")  # +0100 -> UTC
    assert (rows["C3"].field_separator, rows["C3"].encoding_characters) == ("#", "$%\\!")
    assert (rows["C3"].message_type, rows["C3"].trigger_event, rows["C3"].version) == ("ADT", "A08", "2.4")
    unknown = catalog.read("quarantine.landing").collect()
    assert unknown[0].reason == "HL7 v2 segments without an MSH header"
    assert unknown[0].source_file.endswith("nomsh.txt")


def test_explode_segments_and_field_access_with_escapes(spark) -> None:
    msgs = spark.createDataFrame([
        ("h1", "C1", "|", "^~\\&",
         "MSH|^~\\&|APP|FAC|||20240101||ORU^R01|C1|P|2.5\r"
         "PID|1||111^^^H^MR~222^^^X&1.2&ISO^PI||DOE\\S\\X^JANE\r"
         "OBX|1|ST|1^Note||a\\F\\b\\T\\c\\E\\d\\.br\\e\\X41\\ \\H\\f\\N\\\r"),
        ("h2", "C2", "#", "$%!&",
         "MSH#$%!&#APP\rPID#1##333$$$H##ROE!S!X$JOHN"),
    ], "content_hash string, message_control_id string, field_separator string, encoding_characters string, "
       "raw string")
    segs = hl7v2.explode_segments(msgs)
    f, enc, sep = F.col("fields"), F.col("encoding_characters"), F.col("field_separator")
    out = segs.select(
        "content_hash", "segment_index", "segment_id",
        hl7v2.hl7_field(f, 1, encoding=enc, field_separator=sep).alias("f1"),
        hl7v2.hl7_field(f, 2, encoding=enc, field_separator=sep).alias("f2"),
        hl7v2.hl7_field(f, 3, 1, encoding=enc, field_separator=sep).alias("c31"),
        hl7v2.hl7_field(f, 3, 4, 2, repetition=2, encoding=enc, field_separator=sep).alias("c3r2_4_2"),
        hl7v2.hl7_field(f, 5, 1, encoding=enc, field_separator=sep).alias("c51"),
        hl7v2.hl7_field(f, 5, encoding=enc, field_separator=sep).alias("f5"),
        hl7v2.hl7_field(f, 9, 2, encoding=enc, field_separator=sep).alias("c92"),
        hl7v2.hl7_field(f, 40, encoding=enc, field_separator=sep).alias("absent"),
    )
    rows = {(r.content_hash, r.segment_id): r for r in out.collect()}
    msh = rows[("h1", "MSH")]
    assert (msh.f1, msh.f2, msh.c31, msh.c92, msh.absent) == ("|", "^~\\&", "APP", "R01", None)
    pid = rows[("h1", "PID")]
    assert pid.segment_index == 1 and pid.c31 == "111" and pid.c3r2_4_2 == "1.2"
    assert pid.c51 == "DOE^X"
    obx = rows[("h1", "OBX")]
    assert obx.f5 == "a|b&c\\d\ne" + "A f"
    assert rows[("h2", "MSH")].f1 == "#" and rows[("h2", "MSH")].f2 == "$%!&"
    pid2 = rows[("h2", "PID")]
    assert pid2.c31 == "333" and pid2.c51 == "ROE$X"  # !S! is the component separator $


def test_fields_read_from_the_decoded_column_equal_decoding_after_the_split(spark) -> None:
    """The segments' ``decoded`` column (escapes decoded once, escaped delimiters held as stand-ins until the split)
    gives exactly what decoding each selected value gives, for every delimiter set, escaped delimiters, hex that
    spells a delimiter, formatting commands and malformed sequences."""
    msgs = spark.createDataFrame([
        ("h1", "C1", "|", "^~\\&",
         "MSH|^~\\&|APP|FAC|||20240101||ORU^R01|C1|P|2.5\r"
         "PID|1||111^^^H^MR~222^^^X&1.2&ISO^PI||DOE\\S\\X^JANE\\T\\Q~\\X5E\\ROE^A\\X26\\B\r"
         "OBX|1|ST|1^Note||a\\F\\b\\T\\c\\E\\d\\.br\\e\\X41\\ \\H\\f\\N\\^y\\R\\z&\\Zab\\&w~2nd\\X7C\\|"
         "C:\\temp^\\T\\\r"),
        ("h2", "C2", "#", "$%!&",
         "MSH#$%!&#APP\rPID#1##333$$$H##ROE!S!X$JOHN!T!&x!X24!%MAY!R!B\\q"),
    ], "content_hash string, message_control_id string, field_separator string, encoding_characters string, "
       "raw string")
    segs = hl7v2.explode_segments(msgs)
    f, enc, sep, dec = F.col("fields"), F.col("encoding_characters"), F.col("field_separator"), F.col("decoded")
    picks = [(n, c, s, r) for n in (1, 2, 3, 5) for c in (None, 1, 2, 3) for s in (None, 1, 2)
             for r in (None, 1, 2) if not (s is not None and c is None)]
    cols = []
    for i, (n, c, s, r) in enumerate(picks):
        cols += [hl7v2.hl7_field(f, n, c, s, r, encoding=enc, field_separator=sep).alias(f"a{i}"),
                 hl7v2.hl7_field(f, n, c, s, r, encoding=enc, field_separator=sep, decoded=dec).alias(f"b{i}")]
    rows = segs.select("content_hash", "segment_id", *cols).collect()
    compared = 0
    for row in rows:
        for i, pick in enumerate(picks):
            assert row[f"a{i}"] == row[f"b{i}"], (row.content_hash, row.segment_id, pick)
            compared += row[f"a{i}"] is not None
    assert compared > 40
    pid = next(r for r in rows if (r.content_hash, r.segment_id) == ("h1", "PID"))
    assert pid[f"b{picks.index((5, 1, None, 2))}"] == "^ROE"  # \X5E\ is a caret of the text, not a delimiter
    # a lone escape character (a path sent unescaped) does not pair with the next component's escape sequence
    lone = segs.filter("segment_id = 'OBX'").select(*[
        hl7v2.hl7_field(f, 6, c, encoding=enc, field_separator=sep, decoded=dec).alias(f"c{c}") for c in (None, 1, 2)
    ]).first()
    assert (lone.cNone, lone.c1, lone.c2) == ("C:\\temp^&", "C:\\temp", "&")
