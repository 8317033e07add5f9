"""A run's artifacts: list them, summarise metrics, fetch the reports for local viewing."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from headstart.infra.cloud.failure import explain, full_record
from headstart.shared.runtime.errors import UserError
from headstart.shared.storage.manifest import FAILURE, MANIFEST
from headstart.shared.storage.store import open_store

log = logging.getLogger(__name__)

PIPELINE_FAILURE = "_PIPELINE_FAILURE.json"
REPORTS = ("report.html", "auto_report.html")


@dataclass
class Results:
    """Everything ``headstart results`` prints."""

    uri: str
    files: list[tuple[str, int]]
    published: list[str] = field(default_factory=list)      # folders with a manifest
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    downloaded: list[Path] = field(default_factory=list)


def _folder(key: str) -> str:
    return key.rpartition("/")[0] or "."


def _scalars(data: Any, prefix: str = "", depth: int = 2) -> dict[str, Any]:
    """Numeric and string leaves of a metrics JSON, a couple of levels deep."""
    out: dict[str, Any] = {}
    if not isinstance(data, dict) or depth < 0:
        return out
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            out[name] = round(value, 4) if isinstance(value, float) else value
        elif isinstance(value, dict):
            out.update(_scalars(value, f"{name}.", depth - 1))
    return out


def _failure_message(text: str) -> str:
    """A failure record for printing: the explained fields, then the whole record."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:2000]
    if not isinstance(data, dict):
        return str(data)
    if not any(k in data for k in ("step", "Error", "error", "Cause", "cause")):
        # A job's own _FAILURE.json: its message first, the record after.
        head = str(data.get("message") or "")
        return "\n".join(filter(None, [head, "    " + json.dumps(data, sort_keys=True)]))
    explained = explain(data)
    head = "; ".join(explained.lines())
    whole = json.dumps(full_record(data), indent=2, sort_keys=True)
    return head + "\n" + "\n".join("    " + line for line in whole.splitlines())


def collect(run_uri: str, download_to: Path | None) -> Results:
    """Read a run folder; download its reports (and metrics) under ``download_to``."""
    store = open_store(run_uri)
    files = [(k, store.size(k)) for k in store.list()]
    if not files:
        raise UserError(f"no artifacts under {store.uri}: expected the folder of a run "
                        "(what `headstart submit` printed as run)")
    res = Results(store.uri, files)
    for key, _ in files:
        name = key.rpartition("/")[2]
        if name == MANIFEST:
            res.published.append(_folder(key))
        elif name in (FAILURE, PIPELINE_FAILURE):
            res.failures[key] = _failure_message(store.read_text(key))
        elif name == "metrics.json":
            try:
                res.metrics[_folder(key)] = _scalars(json.loads(store.read_text(key)))
            except ValueError:
                log.warning("unreadable metrics file %s/%s", store.uri, key)
        if download_to is not None and (name in REPORTS or name == "metrics.json"):
            res.downloaded.append(store.download_file(key, download_to / key))
    return res


def format_results(res: Results) -> str:
    """Listing, metrics summary, failures and where the reports were saved."""
    lines = [f"run: {res.uri}", f"artifacts ({len(res.files)}):"]
    lines += [f"  {size:>12,d}  {key}" for key, size in res.files]
    lines.append("published: " + (", ".join(res.published) or "nothing yet (no manifest.json)"))
    for folder, values in res.metrics.items():
        lines.append(f"metrics ({folder}):")
        lines += [f"  {k}: {v}" for k, v in values.items()]
    for key, message in res.failures.items():
        lines.append(f"FAILED ({key}): {message}")
    reports = [p for p in res.downloaded if p.name in REPORTS]
    for path in reports:
        lines.append(f"report: {path.resolve().as_uri()}")
    return "\n".join(lines)
