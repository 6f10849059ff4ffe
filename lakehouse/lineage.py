"""OpenLineage run events for every run: a JSON-lines file by default, HTTP (e.g. Marquez) when configured."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, RunEvent, RunState
from openlineage.client.event_v2 import Run as OLRun
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport

from lakehouse.config import Settings
from lakehouse.logs import get_logger

if TYPE_CHECKING:
    from lakehouse.runlog import Run

log = get_logger(__name__)

NAMESPACE = "clinical-lakehouse"
PRODUCER = "https://github.com/clinical-lakehouse/clinical-lakehouse"


def events_path(settings: Settings) -> str:
    return str(settings.system_dir / "openlineage" / "events.jsonl")


def _client(settings: Settings) -> Any:
    if settings.openlineage_url:
        return OpenLineageClient(transport=HttpTransport(HttpConfig(url=settings.openlineage_url)))

    (settings.system_dir / "openlineage").mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=events_path(settings), append=True)))


def _dataset_namespace(settings: Settings) -> str:
    return settings.remote_root or f"file://{settings.root_path}"


def emit(run: Run, state: str) -> None:
    """Emit START / COMPLETE / FAIL for a run; lineage must never break the pipeline."""
    try:
        ns = _dataset_namespace(run.settings)
        inputs = [InputDataset(namespace=ns if i["kind"] == "table" else "file", name=str(i["name"]))
                  for i in run.inputs]
        outputs = [OutputDataset(namespace=ns, name=str(o["table"])) for o in run.outputs]
        event = RunEvent(
            eventType=getattr(RunState, state),
            eventTime=datetime.now(UTC).isoformat(),
            run=OLRun(runId=_uuid(run.run_id)),
            job=Job(namespace=NAMESPACE, name=run.command),
            producer=PRODUCER,
            inputs=inputs if state != "START" else [],
            outputs=outputs if state != "START" else [],
        )
        _client(run.settings).emit(event)
    except Exception as exc:  # noqa: BLE001 - lineage is best effort, the run log is the record
        log.warning("OpenLineage event not sent: %s", exc)


def _uuid(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:32]}"
