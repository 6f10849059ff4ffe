"""``make bench``: the whole pipeline at several scales, side by side with classic Spark, into BENCHMARKS.md/.json.

Per scale: synthetic data into the landing zone, then landing -> Bronze -> Silver -> Gold, each stage timed with
rows, throughput, peak RSS of the Sail server and of this client (sampled in a thread) and Delta versions written.
Then a no-new-data re-run. As a user runs them, each a whole ``lakehouse`` process (its own engine, imports and all):
a run with nothing new, a 1% increment (``lakehouse ingest``, ``silver``, ``gold``) and, up to ``--cli-full-max``
patients, the whole landing -> Gold on a fresh root. The engine-neutral stages (:mod:`benchmarks.classic`) run on
Sail in this process and on classic local Spark in a child process.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyspark
from deltalake import DeltaTable
from pyspark.sql import functions as F

from benchmarks.classic import NeutralInput, run_neutral_stages
from benchmarks.report import write_report
from bronze.landing import landing_file, walk
from bronze.mllp_load import run_load
from lakehouse import engine
from lakehouse.catalog import Catalog
from lakehouse.config import Settings, load_settings, set_settings
from lakehouse.hl7v2 import explode_segments
from lakehouse.runlog import read_runs
from lakehouse_app import pipeline

BENCH_KEY = "benchmark-pseudonym-key-not-a-secret-0123456789"
THROUGHPUT_UNITS = {"hl7v2": "HL7 messages/s", "fhir": "FHIR resources/s", "dicom": "DICOM instances/s"}
TARGETS = {"e2e_1000_s": 60.0, "e2e_10000_s": 600.0, "increment_1pct_share": 0.10, "cli_no_new_data_s": 2.0,
           "bronze_fhir_per_s": 20_000, "bronze_hl7_per_s": 20_000, "bronze_dicom_per_s": 2_000,
           "sail_vs_spark_x": 3.0, "rerun_s": 5.0, "peak_memory_mb_10000": 4096, "mllp_msgs_per_s": 2000,
           "mllp_p99_ms": 50.0}


class RssSampler(threading.Thread):
    """Peak resident memory (MB) per named process, sampled every ``interval`` seconds.

    ``roots`` maps a name to (a function giving the pid or None, whether to add the pid's child processes)."""

    def __init__(self, roots: dict[str, tuple[Callable[[], int | None], bool]], interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.roots = roots
        self.interval = interval
        self.peaks = {name: 0.0 for name in roots}
        self._stop_event = threading.Event()

    @staticmethod
    def rss(pid: int, children: bool) -> int:
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)] if children else [proc]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def sample(self) -> None:
        for name, (pid_of, children) in self.roots.items():
            pid = pid_of()
            if pid:
                self.peaks[name] = max(self.peaks[name], self.rss(pid, children) / 2**20)

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join(timeout=5)
        self.sample()
        return {k: round(v, 1) for k, v in self.peaks.items()}


def _engine_pid() -> int | None:
    server = engine.server()
    return server.process.pid if server is not None and server.process is not None else None


def _versions(settings: Settings) -> dict[str, int]:
    catalog = Catalog(engine.get_spark(settings), settings)
    return {name: catalog.version(name) for name in catalog.list_tables()}


def _rows(settings: Settings, layer: str) -> dict[str, int]:

    catalog = Catalog(engine.get_spark(settings), settings)
    out = {}
    for name in catalog.list_tables():
        if name.startswith(f"{layer}."):
            out[name] = int(DeltaTable(str(catalog.path(name))).to_pyarrow_dataset().count_rows())
    return out


def skipped_stage(name: str, why: str) -> dict[str, Any]:
    """A stage not run at this scale (``--full-max``)."""
    return {"stage": name, "seconds": 0.0, "skipped": why, "result": None, "peak_engine_mb": 0.0,
            "peak_client_mb": 0.0, "delta_versions_written": 0, "tables_written": []}


def run_stage(settings: Settings, name: str, fn: Callable[[], Any]) -> dict[str, Any]:
    """Time one stage; peak RSS of the engine and of this client; Delta versions written; the stage's result."""
    before = _versions(settings)
    # the client alone: the Sail server is a child process of the client and is sampled on its own
    sampler = RssSampler({"engine": (_engine_pid, True), "client": (os.getpid, False)})
    sampler.start()
    start = time.perf_counter()
    result: Any = None
    skipped: str | None = None
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - a failing stage is reported, the later stages still run
        if name == "bronze":
            raise
        skipped = f"failed: {exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
    seconds = time.perf_counter() - start
    peaks = sampler.stop()
    after = _versions(settings)
    versions = {t: v - before.get(t, -1) for t, v in after.items() if v != before.get(t, -1)}
    return {"stage": name, "seconds": round(seconds, 3), "skipped": skipped, "result": result,
            "peak_engine_mb": peaks["engine"], "peak_client_mb": peaks["client"],
            "delta_versions_written": sum(versions.values()), "tables_written": sorted(versions)}


def _cli(root: Path, *args: str) -> dict[str, Any]:
    """One ``lakehouse`` command as a user runs it: a new process (and engine) from a folder without settings;
    its wall time, the peak RSS of its process tree (client + engine), and the run record it wrote."""
    # the run log as the CLI sees it (read_runs orders it by seq)
    at_root = load_settings(config_file=None, environ={}, root=root)
    before = {r["run_id"] for r in read_runs(at_root)}
    env = {**_classic_env(), "LAKEHOUSE_PSEUDONYM_KEY": BENCH_KEY}
    cwd = root.parent / f"{root.name}-cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    log = root.parent / f"{root.name}-cli.log"
    start = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "lakehouse"), "--root", str(root), *args],
                                cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = RssSampler({"process": (lambda: proc.pid, True)})
        sampler.start()
        code = proc.wait()
    seconds = time.perf_counter() - start
    peak = sampler.stop()["process"]
    if code != 0:
        raise RuntimeError(f"lakehouse {' '.join(args)} exited with {code}; see {log}")
    runs = [r for r in read_runs(at_root) if r["run_id"] not in before]
    metrics = json.loads(runs[-1].get("metrics") or "{}") if runs else {}
    return {"command": f"lakehouse {' '.join(args)}", "seconds": round(seconds, 3), "peak_memory_mb": peak,
            "in_process_seconds": metrics.get("seconds"), "silver_build": metrics.get("silver_build")}


def _cli_steps(root: Path, steps: list[tuple[str, ...]]) -> dict[str, Any]:
    out = {" ".join(step): _cli(root, *step) for step in steps}
    return {"seconds": round(sum(s["seconds"] for s in out.values()), 3),
            "peak_memory_mb": max(s["peak_memory_mb"] for s in out.values()), "commands": out}


def _landing_inputs(settings: Settings) -> NeutralInput:

    by: dict[str, list[Any]] = {"hl7v2": [], "fhir": [], "dicom": []}
    for path in walk(settings.landing_dir):
        f = landing_file(settings, path)
        if f.format in ("hl7v2", "fhir"):
            by[f.format].append((str(f.path.resolve()), f.rel, f.charset))
        elif f.format == "dicom":
            by["dicom"].append((str(f.path.resolve()), f.rel, f.size, f.sha256))
    return NeutralInput(by["hl7v2"], by["fhir"], by["dicom"])


def _classic_env() -> dict[str, str]:
    """The environment without what puts pyspark into Spark Connect mode (a Connect session sets both)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    env.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers need this venv (pyarrow, pydicom)
    return env


def _classic(inputs: NeutralInput, work: Path) -> dict[str, Any]:
    """The neutral stages on classic local Spark in a child process; its peak RSS (python + JVM)."""
    plan, out = work / "classic-plan.json", work / "classic-out.json"
    plan.write_text(json.dumps({"inputs": inputs.to_json(), "out_dir": str(work / "classic")}))
    env = _classic_env()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.classic", str(plan), str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(work / "classic.log", "wb"))  # noqa: SIM115
    sampler = RssSampler({"classic": (lambda: proc.pid, True)})
    sampler.start()
    code = proc.wait()
    peak = sampler.stop()["classic"]
    if code != 0:
        return {"error": f"classic Spark exited with {code}; see {work / 'classic.log'}"}
    data = json.loads(out.read_text())
    data["wall_seconds"] = round(time.perf_counter() - start, 3)
    data["peak_mb"] = peak
    return data


def _sail_neutral(settings: Settings, inputs: NeutralInput, work: Path) -> dict[str, Any]:
    sampler = RssSampler({"engine": (_engine_pid, True)})
    sampler.start()
    stages = run_neutral_stages(engine.get_spark(settings), inputs, work / "sail-neutral")
    return {"stages": stages, "peak_engine_mb": sampler.stop()["engine"]}


def compare_hl7_body_parsing(settings: Settings) -> dict[str, Any]:
    """Segments and fields of every Bronze HL7 message: Spark SQL functions vs a vectorized Arrow UDF."""


    spark = engine.get_spark(settings)
    catalog = Catalog(spark, settings)
    if not catalog.exists("bronze.hl7v2_messages"):
        return {}
    messages = catalog.read("bronze.hl7v2_messages").select(
        "content_hash", "message_control_id", "raw", "field_separator", "encoding_characters")
    sql = explode_segments(messages).select(
        "segment_id", F.get("fields", 3).alias("f3"), F.split_part(F.get("fields", 5), F.lit("^"), F.lit(1)).alias("c"))

    def split_segments(batches: Any) -> Any:
        for batch in batches:
            ids: list[str] = []
            f3: list[str | None] = []
            comp: list[str | None] = []
            for raw, sep in zip(batch.column("raw").to_pylist(), batch.column("field_separator").to_pylist(),
                                strict=True):
                for seg in raw.split("\r"):
                    fields = seg.split(sep or "|")
                    if fields[0] == "MSH":
                        fields = ["MSH", sep, *fields[1:]]
                    ids.append(seg[:3])
                    f3.append(fields[3] if len(fields) > 3 else None)
                    comp.append(fields[5].split("^")[0] if len(fields) > 5 else None)
            yield pa.RecordBatch.from_pydict({"segment_id": ids, "f3": f3, "c": comp})

    udf = messages.select("raw", "field_separator").mapInArrow(split_segments, "segment_id string, f3 string, c string")
    out: dict[str, Any] = {}
    for name, df in (("sql_functions", sql), ("arrow_udf", udf)):
        best = float("inf")
        rows = 0
        for _ in range(2):
            start = time.perf_counter()
            row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(F.length("c")).alias("l")).collect()[0]
            best = min(best, time.perf_counter() - start)
            rows = int(row["n"])
        out[name] = {"seconds": round(best, 3), "segments": rows}
    out["faster"] = min(("sql_functions", "arrow_udf"), key=lambda k: out[k]["seconds"])
    return out


def mllp_load(settings: Settings, senders: int, seconds: float) -> dict[str, Any]:
    """The MLLP listener in its own process (``lakehouse listen``), N concurrent senders, then ingest and check
    that every ACKed message is in Bronze."""

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.system_dir.mkdir(parents=True, exist_ok=True)
    log = open(settings.system_dir / "bench-mllp.log", "wb")  # noqa: SIM115
    listener = subprocess.Popen([str(Path(sys.executable).parent / "lakehouse"), "--root", str(settings.root_path),
                                 "listen", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                                env=_classic_env())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if listener.poll() is not None:
                    return {"error": f"the listener exited; see {settings.system_dir / 'bench-mllp.log'}"}
                time.sleep(0.1)
        result = run_load("127.0.0.1", port, senders=senders, seconds=seconds)
    finally:
        listener.terminate()
        listener.wait(timeout=30)
        log.close()
    acked = set(result.pop("acked_ids"))
    ingest_start = time.perf_counter()
    pipeline.ingest(settings, [])
    result["ingest_seconds"] = round(time.perf_counter() - ingest_start, 3)
    catalog = Catalog(engine.get_spark(settings), settings)
    ids = {r[0] for r in catalog.read("bronze.hl7v2_messages").select("message_control_id").collect()}
    result["acked"] = len(acked)
    result["acked_missing_in_bronze"] = len(acked - ids)
    result["errors"] = result["errors"][:5] if isinstance(result.get("errors"), list) else result.get("errors")
    return result


def _throughput(stage: dict[str, Any]) -> dict[str, float]:
    res = stage.get("result") or {}
    secs = stage["seconds"] or 1e-9
    return {THROUGHPUT_UNITS[src]: round(res[src]["received"] / secs, 1)
            for src in THROUGHPUT_UNITS if isinstance(res.get(src), dict) and res[src].get("received")}


def _pipeline(settings: Settings, full: bool = True) -> list[dict[str, Any]]:
    stages = [run_stage(settings, "bronze", lambda: pipeline.ingest(settings, []))]
    for name, step in (("silver", pipeline.silver), ("gold", pipeline.gold)):
        stages.append(run_stage(settings, name, lambda step=step: step(settings)) if full
                      else skipped_stage(name, "not run at this scale (--full-max): Bronze only"))
    return stages


def _summarize(stage: dict[str, Any], layer: str | None, settings: Settings) -> dict[str, Any]:
    out = {k: stage[k] for k in ("seconds", "skipped", "peak_engine_mb", "peak_client_mb", "delta_versions_written")}
    out["peak_memory_mb"] = round(stage["peak_engine_mb"] + stage["peak_client_mb"], 1)
    if stage["stage"] == "bronze" and stage["result"]:
        res = stage["result"]
        out["rows"] = sum(res[s]["bronze"] + res[s]["quarantined"] for s in ("hl7v2", "fhir", "dicom", "unknown"))
        out["received"] = {s: res[s]["received"] for s in ("hl7v2", "fhir", "dicom")}
        out["throughput"] = _throughput(stage)
    elif layer and not stage["skipped"]:
        rows = _rows(settings, layer)
        out["rows"] = sum(rows.values())
        out["tables"] = len(rows)
        out["throughput"] = {"rows/s": round(out["rows"] / (stage["seconds"] or 1e-9), 1)}
    return out


def bench_scale(patients: int, work: Path, classic: bool, increment: bool, full: bool = True,
                cli_full: bool = False) -> dict[str, Any]:
    root = work / f"scale-{patients}"
    shutil.rmtree(root, ignore_errors=True)
    settings = load_settings(config_file=None, environ={}, root=root, pseudonym_key=BENCH_KEY)

    set_settings(settings)
    engine.get_spark(settings)
    gen_start = time.perf_counter()
    pipeline.generate(settings, patients, 42, None, 0.02)
    generate_s = time.perf_counter() - gen_start
    settings = pipeline.with_generator_timezone(settings)  # as the CLI does: the same configuration
    set_settings(settings)
    stages = _pipeline(settings, full)
    report: dict[str, Any] = {"patients": patients, "generate_seconds": round(generate_s, 3), "stages": {}}
    for stage, layer in zip(stages, ("bronze", "silver", "gold"), strict=True):
        report["stages"][stage["stage"]] = _summarize(stage, layer, settings)
    ran = [s for s in stages if not s["skipped"]]
    report["end_to_end_seconds"] = round(sum(s["seconds"] for s in ran), 3)
    report["end_to_end_stages"] = [s["stage"] for s in ran]
    bronze = report["stages"]["bronze"]
    silver_s = report["stages"]["silver"]["seconds"] if not stages[1]["skipped"] else 0.0
    received = bronze.get("received", {})
    report["landing_to_silver"] = {
        "seconds": round(bronze["seconds"] + silver_s, 3), "includes_silver": not stages[1]["skipped"],
        "throughput": {THROUGHPUT_UNITS[s]: round(received.get(s, 0) / (bronze["seconds"] + silver_s), 1)
                       for s in ("hl7v2", "fhir", "dicom")}}
    rerun = _pipeline(settings, full)
    report["rerun_no_new_data"] = {
        "seconds": round(sum(s["seconds"] for s in rerun if not s["skipped"]), 3),
        "per_stage": {s["stage"]: s["seconds"] for s in rerun if not s["skipped"]},
        "delta_versions_written": {s["stage"]: s["delta_versions_written"] for s in rerun},
        "tables_written": sorted({t for s in rerun for t in s["tables_written"]}),
    }
    root_dir = settings.root_path
    if full:  # as a user runs it: a whole process, nothing new
        report["cli_no_new_data"] = _cli(root_dir, "run")
    if increment:
        extra = max(1, patients // 100)
        pipeline.generate(settings, extra, 4242, settings.landing_dir / "increment", 0.02)
        steps = [("ingest",), ("silver",), ("gold",)] if full else [("ingest",)]
        inc = _cli_steps(root_dir, steps)
        report["increment_1pct"] = {
            "patients": extra, "seconds": inc["seconds"], "peak_memory_mb": inc["peak_memory_mb"],
            "per_stage": {name: c["seconds"] for name, c in inc["commands"].items()},
            "in_process_seconds": {name: c["in_process_seconds"] for name, c in inc["commands"].items()},
            "silver_build": (inc["commands"].get("silver") or {}).get("silver_build"),
            "vs_full_run": round(inc["seconds"] / max(report["end_to_end_seconds"], 1e-9), 3)}
    if cli_full:  # the whole landing -> Gold as processes, on a fresh root with the same generated data
        fresh = work / f"scale-{patients}-cli"
        shutil.rmtree(fresh, ignore_errors=True)
        fresh_settings = load_settings(config_file=None, environ={}, root=fresh, pseudonym_key=BENCH_KEY)
        pipeline.generate(fresh_settings, patients, 42, None, 0.02)
        report["cli_end_to_end"] = _cli_steps(fresh, [("ingest",), ("silver",), ("gold",)])
        shutil.rmtree(fresh, ignore_errors=True)
    report["hl7_body_parsing"] = compare_hl7_body_parsing(settings)
    if classic:
        inputs = _landing_inputs_initial(settings)
        report["engine_neutral"] = _neutral(settings, inputs, root / "_neutral")
    return report


def _landing_inputs_initial(settings: Settings) -> NeutralInput:
    inputs = _landing_inputs(settings)

    def keep(rel: str) -> bool:
        return "/increment/" not in f"/{rel}"

    return NeutralInput([x for x in inputs.hl7v2 if keep(x[1])], [x for x in inputs.fhir if keep(x[1])],
                        [x for x in inputs.dicom if keep(x[1])])


def _neutral(settings: Settings, inputs: NeutralInput, work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    sail = _sail_neutral(settings, inputs, work)
    spark = _classic(inputs, work)
    out: dict[str, Any] = {"sail": sail, "classic_spark": spark, "ratio_sail_over_spark": {}, "rows_match": {}}
    for stage, s in sail["stages"].items():
        c = spark.get("stages", {}).get(stage)
        if c:
            out["ratio_sail_over_spark"][stage] = round(s["seconds"] / max(c["seconds"], 1e-9), 3)
            out["rows_match"][stage] = (s["rows"], s["quarantined"]) == (c["rows"], c["quarantined"])
    total_sail = sum(s["seconds"] for s in sail["stages"].values())
    total_spark = sum(c["seconds"] for c in spark.get("stages", {}).values())
    if total_spark:
        out["ratio_sail_over_spark"]["total"] = round(total_sail / total_spark, 3)
    return out


def machine() -> dict[str, Any]:

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
    
        sail = version("pysail")
    except Exception:  # noqa: BLE001 - not installed
        sail = "unknown"
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[:1]
    return {"nproc": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "cpu": cpu,
            "python": platform.python_version(), "pysail": sail, "pyspark": pyspark.__version__,
            "java": java[0] if java else "not found", "os": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def run_bench(scales: list[int], out_dir: Path, work: Path, quick: bool = False, classic: bool = True,
              mllp_seconds: float = 10.0, mllp_senders: int = 8, increment: bool = True,
              classic_max_patients: int = 1000, full_max_patients: int | None = None,
              cli_full_max_patients: int = 1000) -> dict[str, Any]:
    """Run every scale and write BENCHMARKS.json, BENCHMARKS.md and the scale-curve PNG into ``out_dir``."""

    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                               "quick": quick, "targets": TARGETS, "scales": {}}
    for patients in scales:
        results["scales"][str(patients)] = bench_scale(
            patients, work, classic=classic and patients <= classic_max_patients,
            increment=increment, full=full_max_patients is None or patients <= full_max_patients,
            cli_full=patients <= cli_full_max_patients)
        write_report(results, out_dir)  # after every scale: a long run that is cut short still reports
    if mllp_seconds <= 0:
        write_report(results, out_dir)
        return results
    mllp_root = work / "mllp"
    shutil.rmtree(mllp_root, ignore_errors=True)
    mllp_settings = load_settings(config_file=None, environ={}, root=mllp_root, pseudonym_key=BENCH_KEY)

    set_settings(mllp_settings)
    engine.get_spark(mllp_settings)
    results["mllp"] = mllp_load(mllp_settings, senders=mllp_senders, seconds=3.0 if quick else mllp_seconds)
    write_report(results, out_dir)
    return results
