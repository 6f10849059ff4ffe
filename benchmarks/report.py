"""BENCHMARKS.json, BENCHMARKS.md and the scale-curve PNG from the results of :func:`benchmarks.harness.run_bench`.

BENCHMARKS.md is generated whole, from the results alone: every number in it is in BENCHMARKS.json, and
``write_report(json.loads(Path("BENCHMARKS.json").read_text()), Path("."))`` re-renders both files unchanged.
Hand-written analysis lives in ``docs/performance.md``, which the benchmark never writes; the report links to it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STAGES = ("bronze", "silver", "gold")
ANALYSIS = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def _neutral(scale: dict[str, Any]) -> dict[str, Any] | None:
    """One scale's Sail vs classic Spark comparison: ``engine_neutral`` in fresh results, ``sail_vs_spark`` in JSON."""
    return scale.get("engine_neutral") or scale.get("sail_vs_spark")


def to_json(results: dict[str, Any]) -> dict[str, Any]:
    """The committed machine-readable summary: per scale and stage seconds, rows, throughput, peak memory."""
    scales: dict[str, Any] = {}
    for patients, r in results["scales"].items():
        scales[patients] = {
            "stages": {name: {k: st.get(k) for k in ("seconds", "rows", "throughput", "peak_memory_mb",
                                                     "peak_engine_mb", "peak_client_mb", "delta_versions_written",
                                                     "skipped")}
                       for name, st in r["stages"].items()},
            "end_to_end_seconds": r["end_to_end_seconds"],
            "end_to_end_stages": r["end_to_end_stages"],
            "landing_to_silver": r["landing_to_silver"],
            "rerun_no_new_data_seconds": r["rerun_no_new_data"]["seconds"],
            "rerun_no_new_data": r["rerun_no_new_data"],
            "generate_seconds": r["generate_seconds"],
            "hl7_body_parsing": r.get("hl7_body_parsing"),
        }
        for optional in ("increment_1pct", "measured_separately", "cli_no_new_data", "cli_end_to_end"):
            if optional in r:
                scales[patients][optional] = r[optional]
        neutral = _neutral(r)
        if neutral:
            scales[patients]["sail_vs_spark"] = {
                "ratio_sail_over_spark": neutral["ratio_sail_over_spark"], "rows_match": neutral["rows_match"],
                "sail": neutral["sail"], "classic_spark": neutral["classic_spark"]}
    return {"date": results["date"], "machine": results["machine"], "quick": results["quick"],
            "targets": results["targets"], "scales": scales, "mllp": results.get("mllp")}


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def plot(results: dict[str, Any], path: Path) -> None:
    # deferred: matplotlib takes ~1.5 s to import (measured); only chart rendering uses it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted(results["scales"], key=int)
    xs = [int(s) for s in scales]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in STAGES:
        ys = [results["scales"][s]["stages"][stage]["seconds"] for s in scales
              if not results["scales"][s]["stages"][stage]["skipped"]]
        if len(ys) == len(xs):
            ax1.plot(xs, ys, marker="o", label=stage)
    full = [s for s in scales if all(not st["skipped"] for st in results["scales"][s]["stages"].values())]
    if full:  # end to end only where every stage ran
        ax1.plot([int(s) for s in full], [results["scales"][s]["end_to_end_seconds"] for s in full], marker="s",
                 linestyle="none", label="end to end (all stages)")
    ax1.set(xscale="log", yscale="log", xlabel="patients", ylabel="seconds", title="wall time")
    ax1.legend()
    ax2.plot(xs, [max(st["peak_engine_mb"] for st in results["scales"][s]["stages"].values()) for s in scales],
             marker="o", label="Sail engine")
    ax2.plot(xs, [max(st["peak_client_mb"] for st in results["scales"][s]["stages"].values()) for s in scales],
             marker="o", label="client")
    ax2.set(xscale="log", xlabel="patients", ylabel="peak RSS (MB)", title="peak memory")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def to_markdown(results: dict[str, Any], png_name: str, analysis: str = "docs/performance.md") -> str:
    """The whole of BENCHMARKS.md; ``analysis`` is the link to the hand-written analysis (docs/performance.md)."""
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['date']} by `make bench` (`python -m benchmarks`)"
        f"{' (quick mode)' if results['quick'] else ''}. This file and `BENCHMARKS.json` are regenerated whole by "
        "every run: do not edit them by hand. What the numbers mean, where the time goes and why targets are missed: "
        f"[docs/performance.md]({analysis}).",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, {m['os']}; Python {m['python']}, "
        f"pysail {m['pysail']}, PySpark {m['pyspark']}, {m['java']}. Load average at start: "
        f"{m['load_average_at_start']} (other work shared the machine; numbers are wall time).",
        "",
    ]
    if any(_neutral(r) for r in results["scales"].values()):
        lines += [
            "Classic Spark runs `local[*]` on the JVM and writes **Parquet instead of Delta**: the Delta jars cannot "
            "be downloaded on this machine. It runs the engine-neutral stages only (Bronze parsing and the HL7 body "
            "parse that Silver starts from), in its own process, on the same landing files.",
            "",
        ]
    for patients, r in sorted(results["scales"].items(), key=lambda kv: int(kv[0])):
        lines += [f"## {int(patients):,} patients", ""]
        if r.get("measured_separately"):
            lines += [f"Measured in a separate run on the same machine, {r['measured_separately']}.", ""]
        lines += [
                  "| stage | seconds | rows | throughput | peak engine MB | peak client MB | Delta versions |",
                  "|---|---:|---:|---|---:|---:|---:|"]
        for name, st in r["stages"].items():
            if st["skipped"]:
                lines.append(f"| {name} | skipped: {st['skipped']} | | | | | |")
                continue
            tp = ", ".join(f"{_fmt(v)} {k}" for k, v in (st.get("throughput") or {}).items())
            lines.append(f"| {name} | {_fmt(st['seconds'])} | {_fmt(st.get('rows'))} | {tp} | "
                         f"{_fmt(st['peak_engine_mb'])} | {_fmt(st['peak_client_mb'])} | "
                         f"{st['delta_versions_written']} |")
        lts = r["landing_to_silver"]
        lines += ["",
                  f"End to end ({' -> '.join(r['end_to_end_stages'])}): **{_fmt(r['end_to_end_seconds'])} s**. "
                  f"Landing -> {'Silver' if lts['includes_silver'] else 'Bronze (Silver not run at this scale)'}: "
                  + ", ".join(f"{_fmt(v)} {k}" for k, v in lts["throughput"].items() if v) + ".",
                  f"Re-run with no new data: **{_fmt(r['rerun_no_new_data']['seconds'])} s** "
                  f"({', '.join(f'{k} {_fmt(v)} s' for k, v in r['rerun_no_new_data']['per_stage'].items())}); "
                  f"tables written: {r['rerun_no_new_data']['tables_written'] or 'none'}.",
                  f"Generating the synthetic data took {_fmt(r['generate_seconds'])} s (not part of the pipeline)."]
        if "cli_end_to_end" in r:
            cli = r["cli_end_to_end"]
            lines.append(f"Landing -> Gold as `lakehouse` processes on a fresh root (each its own engine): "
                         f"**{_fmt(cli['seconds'])} s** ("
                         + ", ".join(f"{k} {_fmt(c['seconds'])} s, in-process {_fmt(c['in_process_seconds'])} s"
                                     for k, c in cli["commands"].items())
                         + f"); peak memory {_fmt(cli['peak_memory_mb'])} MB (client + engine).")
        if "cli_no_new_data" in r:
            cli = r["cli_no_new_data"]
            lines.append(f"`lakehouse run` with nothing new, as a whole process: **{_fmt(cli['seconds'])} s**.")
        if "increment_1pct" in r:
            inc = r["increment_1pct"]
            build = inc.get("silver_build") or {}
            how = (f"; Silver built {build['mode']}"
                   + (f", {build.get('recomputed_records', 0):,} of {build.get('bronze_records', 0):,} Bronze "
                      f"records recomputed" if build.get("recomputed_records") is not None else "")
                   + (f" ({build['reason']})" if build.get("reason") else "")) if build else ""
            lines.append(f"Adding 1% new data ({inc['patients']} patients) as `lakehouse ingest`, `silver`, `gold` "
                         f"processes: **{_fmt(inc['seconds'])} s** ({_fmt(inc['vs_full_run'] * 100)}% of the "
                         f"in-process full run; "
                         f"{', '.join(f'{k} {_fmt(v)} s' for k, v in inc['per_stage'].items())}{how}).")
        neutral = _neutral(r)
        if neutral and neutral["ratio_sail_over_spark"]:
            lines += ["", "| engine-neutral stage | Sail s | classic Spark s | Sail/Spark | rows match |",
                      "|---|---:|---:|---:|---|"]
            for stage, ratio in neutral["ratio_sail_over_spark"].items():
                if stage == "total":
                    continue
                sail_s = neutral["sail"]["stages"][stage]["seconds"]
                spark_s = neutral["classic_spark"]["stages"][stage]["seconds"]
                lines.append(f"| {stage} | {_fmt(sail_s)} | {_fmt(spark_s)} | {_fmt(ratio)} | "
                             f"{neutral['rows_match'][stage]} |")
            total = neutral["ratio_sail_over_spark"].get("total")
            cs = neutral["classic_spark"]
            lines.append(f"| total | | | {_fmt(total)} | |")
            lines.append("")
            lines.append(f"Classic Spark: JVM start {_fmt(cs.get('startup_seconds'))} s (not in the stage times), "
                         f"peak RSS (Python + JVM) {_fmt(cs.get('peak_mb'))} MB; Sail engine peak "
                         f"{_fmt(neutral['sail']['peak_engine_mb'])} MB.")
        body = r.get("hl7_body_parsing") or {}
        if body:
            lines.append("")
            lines.append(f"HL7 body parsing (segments + fields of every Bronze message, on Sail): SQL functions "
                         f"{_fmt(body['sql_functions']['seconds'])} s vs vectorized Arrow UDF "
                         f"{_fmt(body['arrow_udf']['seconds'])} s for {_fmt(body['sql_functions']['segments'])} "
                         f"segments: **{body['faster'].replace('_', ' ')}** is faster.")
        lines.append("")
    lines += [f"![scale curve]({png_name})", "", *targets(results), ""]
    mllp = results.get("mllp") or {}
    if mllp and "error" not in mllp:
        lat = mllp["latency_ms"]
        lines += ["## MLLP load", "",
                  f"{mllp['senders']} concurrent senders on loopback for {_fmt(mllp['seconds'])} s against "
                  f"`lakehouse listen` (its own process; ACK after the group commit to landing is fsynced): "
                  f"**{_fmt(mllp['messages_per_s'])} messages/s**, ACK latency p50 {_fmt(lat['p50'])} ms, "
                  f"p99 {_fmt(lat['p99'])} ms, max {_fmt(lat['max'])} ms. ACKed {mllp['acked']:,}; "
                  f"ACKed but missing in Bronze after ingestion: {mllp['acked_missing_in_bronze']} "
                  f"(ingestion took {_fmt(mllp['ingest_seconds'])} s).", ""]
    elif mllp:
        lines += ["## MLLP load", "", f"Not measured: {mllp['error']}", ""]
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[str]:
    """The issue's targets next to what was measured."""
    scales = results["scales"]
    largest = max(scales, key=int)
    rows: list[tuple[str, str, bool | None]] = []
    if "1000" in scales:
        e2e = scales["1000"]["end_to_end_seconds"]
        ran = " -> ".join(scales["1000"]["end_to_end_stages"])
        rows.append(("1,000 patients landing -> Gold < 60 s", f"{e2e:.1f} s ({ran})",
                     e2e < 60 and "gold" in scales["1000"]["end_to_end_stages"]))
    bronze = scales[largest]["stages"]["bronze"].get("throughput") or {}
    for unit, target in (("FHIR resources/s", 20_000), ("HL7 messages/s", 20_000), ("DICOM instances/s", 2_000)):
        value = bronze.get(unit, 0)
        rows.append((f"Bronze >= {target:,} {unit} ({int(largest):,} patients; all three sources in one stage)",
                     f"{value:,.0f}", value >= target))
    neutrals = [n for n in (_neutral(r) for r in scales.values()) if n]
    ratios = [n["ratio_sail_over_spark"].get("total") for n in neutrals]
    ratios = [x for x in ratios if x]
    if ratios:
        rows.append((">= 3x faster than classic Spark (engine-neutral stages)",
                     ", ".join(f"{1 / x:.1f}x" for x in ratios) + " (smallest to largest scale)",
                     all(1 / x >= 3 for x in ratios)))
    for patients in sorted(scales, key=int):
        cli = scales[patients].get("cli_end_to_end")
        if cli:
            rows.append((f"{int(patients):,} patients landing -> Gold as processes", f"{cli['seconds']:.1f} s",
                         cli["seconds"] < 60 if patients == "1000" else None))
        if patients == "10000" and "gold" in scales[patients]["end_to_end_stages"]:
            e2e = scales[patients]["end_to_end_seconds"]
            rows.append(("10,000 patients end to end < 10 min", f"{e2e / 60:.1f} min", e2e < 600))
        inc = scales[patients].get("increment_1pct")
        if inc:
            rows.append((f"+1% new data < 10% of the full run ({int(patients):,} patients)",
                         f"{inc['vs_full_run'] * 100:.0f}% ({inc['seconds']:.0f} s)", inc["vs_full_run"] < 0.10))
    rerun = max(r["rerun_no_new_data"]["seconds"] for r in scales.values())
    rows.append(("no-new-data re-run < 5 s (in-process)", f"{rerun:.1f} s (worst scale)", rerun < 5))
    clis = [r["cli_no_new_data"]["seconds"] for r in scales.values() if r.get("cli_no_new_data")]
    if clis:
        rows.append(("no-new-data `lakehouse run` < 2 s as a process", f"{max(clis):.1f} s (worst scale)",
                     max(clis) < 2))
    peak = max(st["peak_memory_mb"] for st in scales[largest]["stages"].values())
    rows.append((f"peak memory < 4 GB (measured at {int(largest):,} patients)", f"{peak:,.0f} MB (engine + client)",
                 peak < 4096 if largest == "10000" else None))
    mllp = results.get("mllp") or {}
    if mllp and "error" not in mllp:
        rows.append(("MLLP >= 2,000 msg/s, p99 < 50 ms, every ACKed message in Bronze",
                     f"{mllp['messages_per_s']:,.0f} msg/s, p99 {mllp['latency_ms']['p99']:.1f} ms, "
                     f"{mllp['acked_missing_in_bronze']} missing",
                     mllp["messages_per_s"] >= 2000 and mllp["latency_ms"]["p99"] < 50
                     and mllp["acked_missing_in_bronze"] == 0))
    out = ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    out += [f"| {t} | {v} | {'yes' if ok else 'no' if ok is False else 'not measured at that scale'} |"
            for t, v, ok in rows]
    return out


def write_report(results: dict[str, Any], out_dir: Path, notes: str = "") -> None:
    """Write BENCHMARKS.json, the scale-curve PNG and BENCHMARKS.md into ``out_dir``.

    ``results`` is what :func:`benchmarks.harness.run_bench` returns, or a BENCHMARKS.json read back (to re-render
    the report without re-running the benchmark). ``notes`` is appended to BENCHMARKS.md as is.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "BENCHMARKS.json").write_text(json.dumps(to_json(results), indent=2, default=str) + "\n")
    png = "benchmarks-scale.png"
    plot(results, out_dir / png)
    analysis = Path(os.path.relpath(ANALYSIS, out_dir.resolve())).as_posix()
    (out_dir / "BENCHMARKS.md").write_text(to_markdown(results, png, analysis) + notes)
