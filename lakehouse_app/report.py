"""The HTML run report: one static file per run under ``<root>/_system/reports`` (plus ``latest.html``).

Everything is read from the Delta logs and files with delta-rs (no engine needed): row counts per layer,
quarantine counts by reason, data quality results, the last runs, and two inline SVG charts.
"""

from __future__ import annotations

import html
import io
import json
import math
import shutil
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deltalake import DeltaTable

from lakehouse.catalog import is_delta_table
from lakehouse.config import Settings
from lakehouse.logs import get_logger
from lakehouse.runlog import code_version, error_text, read_runs, verify_audit
from lakehouse.status import table_status

log = get_logger(__name__)

REPORTS_DIR = "reports"
DQ_TABLE = ("_system", "dq_results")
READMISSION_MART = ("gold", "mart_readmission_30d")
FEATURE_TABLE = ("gold", "features_readmission")
LAYER_ORDER = ("bronze", "silver", "gold", "quarantine")  # data layers (_system holds logs, not data)


def _table(settings: Settings, layer: str, name: str) -> DeltaTable | None:
    path = settings.table_path(layer, name)
    return DeltaTable(str(path)) if is_delta_table(path) else None


def quarantine_reasons(settings: Settings) -> list[dict[str, Any]]:
    """One row per (quarantine table, reason) with its count, largest first."""
    out = []
    qdir = settings.layer_path("quarantine")
    if not qdir.is_dir():
        return out
    for path in sorted(qdir.iterdir()):
        if not is_delta_table(path):
            continue
        dt = DeltaTable(str(path))
        if "reason" not in dt.schema().to_arrow().names:
            continue
        reasons = Counter(dt.to_pyarrow_table(columns=["reason"]).column("reason").to_pylist())
        out += [{"table": f"quarantine.{path.name}", "reason": r or "(no reason)", "rows": n}
                for r, n in reasons.items()]
    return sorted(out, key=lambda r: (-r["rows"], r["table"], r["reason"]))


def dq_results(settings: Settings) -> list[dict[str, Any]]:
    """Results of the latest data quality run (by ``run_id`` of the last written row), failures first."""
    dt = _table(settings, *DQ_TABLE)
    if dt is None:
        return []
    rows = dt.to_pyarrow_table().to_pylist()
    if not rows:
        return []
    run_ids = [r.get("run_id") for r in rows]
    last = run_ids[-1]
    for key in ("evaluated_at", "run_at", "validated_at", "created_at"):
        if key in rows[0]:
            last = max(rows, key=lambda r, k=key: (r.get(k) is not None, r.get(k) or 0))["run_id"]
            break
    latest = [r for r in rows if r.get("run_id") == last]
    return sorted(latest, key=lambda r: (bool(r.get("success")), str(r.get("table")), str(r.get("expectation"))))


def readmission_by_month(settings: Settings) -> tuple[list[tuple[str, float, int]], str]:
    """(month, rate, discharges) from the Gold mart, else from the feature table; and which table it came from."""
    mart = _table(settings, *READMISSION_MART)
    if mart is not None:
        data = mart.to_pyarrow_table().to_pylist()
        if data:
            series = _series_from_mart(data)
            if series:
                return series, ".".join(READMISSION_MART)
    features = _table(settings, *FEATURE_TABLE)
    if features is not None:
        data = features.to_pyarrow_table(columns=["discharge_at", "readmitted_within_30d"]).to_pylist()
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in data:
            if r["discharge_at"] is None or r["readmitted_within_30d"] is None:  # censored: outcome not known
                continue
            month = r["discharge_at"].strftime("%Y-%m")
            counts[month][0] += 1
            counts[month][1] += int(bool(r["readmitted_within_30d"]))
        series = [(m, c[1] / c[0], c[0]) for m, c in sorted(counts.items())]
        return series, ".".join(FEATURE_TABLE)
    return [], ""


def _series_from_mart(rows: list[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """Month x rate from a mart whose exact columns Gold owns: a month/date column and a flag or rate column."""
    cols = list(rows[0])
    month_col = next((c for c in cols if "month" in c.lower()), None) or next(
        (c for c in cols if "discharge" in c.lower() and ("date" in c.lower() or c.lower().endswith("_at"))), None)
    flag_col = next((c for c in cols if "readmit" in c.lower() and isinstance(rows[0][c], bool)), None)
    rate_col = next((c for c in cols if "rate" in c.lower()), None)
    # the denominator of the rate (e.g. index_discharges): rows per department are weighted by it
    count_col = next((c for c in cols if c.lower() == "n" or any(w in c.lower() for w in ("discharges", "admissions"))
                      and "readmi" not in c.lower()), None)
    if month_col is None or (flag_col is None and rate_col is None):
        return []
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        value = r[month_col]
        if value is None:
            continue
        month = value.strftime("%Y-%m") if hasattr(value, "strftime") else str(value)[:7]
        if flag_col is not None:
            groups[month][0] += 1
            groups[month][1] += float(bool(r[flag_col]))
        elif r[rate_col] is not None:
            n = float(r[count_col]) if count_col and r[count_col] is not None else 1.0
            groups[month][0] += n
            groups[month][1] += float(r[rate_col]) * n
    return [(m, g[1] / g[0], int(g[0])) for m, g in sorted(groups.items()) if g[0]]


# -- charts ----------------------------------------------------------------------------------------

def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def rows_per_layer_chart(status: list[dict[str, Any]]) -> str:
    # deferred: matplotlib takes ~1.5 s to import (measured); only chart rendering uses it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    totals = Counter()
    for r in status:
        totals[r["layer"]] += r["rows"]
    layers = [layer for layer in LAYER_ORDER if layer in totals]
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    bars = ax.barh(layers[::-1], [totals[layer] for layer in layers[::-1]], color="#3b6ea8")
    ax.bar_label(bars, labels=[f"{totals[layer]:,}" for layer in layers[::-1]], padding=3, fontsize=9)
    ax.set_xlabel("rows")
    ax.set_title("Rows per layer")
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(x=0.15)
    svg = _svg(fig)
    plt.close(fig)
    return svg


def _continuous_months(series: list[tuple[str, float, int]]) -> list[tuple[str, float, int]]:
    """Months without discharges as gaps (rate NaN, 0 discharges), so the x axis is calendar time."""
    by_month = {m: (rate, n) for m, rate, n in series}
    year, month = map(int, series[0][0].split("-"))
    out = []
    while True:
        key = f"{year:04d}-{month:02d}"
        rate, n = by_month.get(key, (math.nan, 0))
        out.append((key, rate, n))
        if key >= series[-1][0]:
            return out
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def readmission_chart(series: list[tuple[str, float, int]], source: str) -> str:
    # deferred: matplotlib takes ~1.5 s to import (measured); only chart rendering uses it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _continuous_months(series)
    months = [m for m, _, _ in series]
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    volume = ax.twinx()  # discharges behind the rate: a 0 % month with 2 discharges means little
    volume.bar(range(len(months)), [n for _, _, n in series], color="#d9e2ec", width=0.7)
    volume.set_ylabel("discharges", color="#7a8797")
    volume.tick_params(axis="y", colors="#7a8797")
    ax.set_zorder(volume.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(range(len(months)), [100 * rate for _, rate, _ in series], marker="o", color="#b5473a")
    ax.set_ylabel("readmitted in 30 days (%)")
    ax.set_title(f"30-day readmission rate by discharge month\n({source})", fontsize=10)
    ax.set_ylim(bottom=0)
    for side in (ax, volume):
        side.spines[["top"]].set_visible(False)
    step = max(1, len(months) // 12)
    ax.set_xticks(range(0, len(months), step), months[::step], rotation=45, ha="right", fontsize=8)
    svg = _svg(fig)
    plt.close(fig)
    return svg


# -- HTML ------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2733;
padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d6dde6}
.meta{color:#5a6878;font-size:.9rem}table{border-collapse:collapse;width:100%;font-size:.85rem;margin:.5rem 0}
th,td{border-bottom:1px solid #e3e8ee;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f6f9}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1f7a3a;font-weight:600}.failed{color:#b3261e;font-weight:600}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem}.charts>div{flex:1 1 480px}.charts svg{width:100%;height:auto}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{background:#f3f6f9;border-radius:6px;padding:.6rem 1rem}
.card b{display:block;font-size:1.3rem}.empty{color:#5a6878;font-style:italic}
"""


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _html_table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            if isinstance(v, tuple):  # (text, css class)
                cells.append(f'<td class="{v[1]}">{_esc(v[0])}</td>')
            elif i in numeric:
                cells.append(f'<td class="num">{v:,}</td>' if isinstance(v, int) else f'<td class="num">{_esc(v)}</td>')
            else:
                cells.append(f"<td>{_esc(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _runs_rows(settings: Settings, runs: list[dict[str, Any]]) -> list[list[Any]]:
    """The last runs; the report is written to _system (restricted), so it shows the error text itself."""
    rows = []
    for r in reversed(runs):
        metrics = json.loads(r.get("metrics") or "{}")
        outputs = json.loads(r.get("outputs") or "[]")
        started = r["started_at"].strftime("%Y-%m-%d %H:%M:%S") if r.get("started_at") else ""
        rows.append([r["seq"], r["run_id"][:8], r["command"], (r["status"], "ok" if r["status"] == "ok" else "failed"),
                     started, metrics.get("seconds", ""), len(outputs), (error_text(settings, r) or "")[:160]])
    return rows


def render(settings: Settings, now: datetime | None = None) -> str:

    now = now or datetime.now(UTC)
    status = table_status(settings)
    quarantine = quarantine_reasons(settings)
    dq = dq_results(settings)
    runs = read_runs(settings)
    chain_ok, chain_msg = verify_audit(settings)
    series, series_source = readmission_by_month(settings)

    layer_rows = Counter()
    for r in status:
        layer_rows[r["layer"]] += r["rows"]
    cards = "".join(f'<div class="card">{_esc(layer)}<b>{layer_rows[layer]:,}</b>rows</div>'
                    for layer in LAYER_ORDER if layer in layer_rows and layer != "quarantine")
    dq_failed = sum(1 for r in dq if not r.get("success"))
    cards += f'<div class="card">quarantined<b>{sum(r["rows"] for r in quarantine):,}</b>rows</div>'
    if dq:
        cards += f'<div class="card">data quality<b>{len(dq) - dq_failed}/{len(dq)}</b>expectations passed</div>'

    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Lakehouse run report {now:%Y-%m-%d %H:%M} UTC</title><style>{CSS}</style></head><body>",
        "<h1>Clinical lakehouse: run report</h1>",
        f"<p class='meta'>root <code>{_esc(settings.root_path)}</code> &middot; generated {now:%Y-%m-%d %H:%M:%S} UTC"
        f" &middot; code {_esc(code_version())} &middot; audit chain "
        f"<span class='{'ok' if chain_ok else 'failed'}'>{_esc(chain_msg)}</span></p>",
        f"<div class='cards'>{cards}</div>",
        "<h2>Charts</h2><div class='charts'>",
    ]
    data_tables = [r for r in status if r["layer"] in LAYER_ORDER]
    parts.append(f"<div>{rows_per_layer_chart(data_tables)}</div>" if data_tables
                 else "<div class='empty'>no tables yet</div>")
    if series:
        parts.append(f"<div>{readmission_chart(series, series_source)}<p class='meta'>Discharges of the last 30 days "
                     "have not finished their follow-up: their rate is a lower bound.</p></div>")
    else:
        parts.append("<div class='empty'>no readmission data yet (gold.mart_readmission_30d or "
                     "gold.features_readmission)</div>")
    parts.append("</div>")

    parts.append("<h2>Row counts per table</h2>")
    parts.append(_html_table(["layer", "table", "rows", "version", "last write (UTC)"],
                             [[r["layer"], r["table"], r["rows"], r["version"],
                               (r["last_write"] or "")[:19].replace("T", " ")] for r in status],
                             numeric={2, 3}) if status else "<p class='empty'>no tables</p>")

    parts.append("<h2>Quarantine by reason</h2>")
    parts.append(_html_table(["table", "reason", "rows"], [[r["table"], r["reason"], r["rows"]] for r in quarantine],
                             numeric={2}) if quarantine else "<p class='empty'>nothing quarantined</p>")

    parts.append("<h2>Data quality</h2>")
    if dq:
        parts.append(f"<p class='meta'>run {_esc(dq[0].get('run_id'))}: {dq_failed} failed of {len(dq)}</p>")
        parts.append(_html_table(
            ["table", "expectation", "category", "severity", "result", "unexpected", "observed"],
            [[r.get("table"), r.get("expectation"), r.get("category"), r.get("severity"),
              ("passed", "ok") if r.get("success") else ("failed", "failed"), r.get("unexpected_count"),
              (r.get("observed") or "")[:120]]
             for r in dq], numeric={5}))
    else:
        parts.append("<p class='empty'>no data quality results (_system.dq_results) yet</p>")

    parts.append("<h2>Last runs</h2>")
    runs_header = ["seq", "run", "command", "status", "started (UTC)", "seconds", "outputs", "error"]
    parts.append(_html_table(runs_header, _runs_rows(settings, runs[-15:]), numeric={0, 5, 6})
                 if runs else "<p class='empty'>no runs</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(settings: Settings) -> Path:
    """Write ``<root>/_system/reports/run-<UTC timestamp>.html`` and copy it to ``latest.html``."""
    now = datetime.now(UTC)
    out_dir = settings.system_dir / REPORTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"run-{now:%Y%m%dT%H%M%S%fZ}.html"
    path.write_text(render(settings, now), encoding="utf-8")
    shutil.copyfile(path, out_dir / "latest.html")
    log.info("run report %s", path)
    return path
