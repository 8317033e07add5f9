"""Write the audit's outputs: audit.csv, keep.csv, summary.json, report.html, spec.yaml; manifest last."""
from __future__ import annotations

import csv
import io
import logging


from headstart.jobs.audit.spec import AuditSpec
from headstart.shared.report import html as report
from headstart.shared.storage.manifest import RunOutput

log = logging.getLogger("headstart.audit")

# Findings that take an image off the keep-list (extreme aspect ratios are reported only:
# a panorama can be a fine example).
DROPS = ("unreadable", "tiny", "near_constant", "label_issue", "outlier", "duplicate", "conflict", "leakage")
FINDINGS = ("label_issue", "outlier", "duplicate", "conflict", "leakage", "unreadable", "tiny",
            "extreme_aspect", "near_constant")


def _flag_images(spec: AuditSpec, names: list[str], decoded, ok, issues, outliers, dups) -> tuple[list[dict], dict]:
    """One record per decoded image, and {finding: [(record index, score, partner)]}."""
    row_of = {id(d): i for i, d in enumerate(decoded)}
    rows = [{"key": d.item.key, "split": d.split, "label": d.item.label, "width": d.width, "height": d.height,
             "issues": [], "suggested_label": "", "label_score": "", "outlier_score": "", "duplicate_of": "",
             "error": d.error} for d in decoded]
    found: dict[str, list[tuple[int, float, int | None]]] = {f: [] for f in FINDINGS}

    def flag(i: int, what: str, score: float, partner: int | None = None) -> None:
        if what not in rows[i]["issues"]:
            rows[i]["issues"].append(what)
            found[what].append((i, score, partner))

    for i, d in enumerate(decoded):
        if d.array is None and d.thumb is None:
            flag(i, "unreadable", 1.0)
            continue
        short, long = min(d.width, d.height), max(d.width, d.height)
        if short < spec.tiny_side:
            flag(i, "tiny", 1.0 - short / spec.tiny_side)
        if long / max(short, 1) > spec.max_aspect:
            flag(i, "extreme_aspect", long / max(short, 1))
        if d.std < spec.constant_std:
            flag(i, "near_constant", spec.constant_std - d.std)
    pos = [row_of[id(d)] for d in ok]  # row of each embedded image
    out_score, out_flag = outliers
    for j, i in enumerate(pos):
        rows[i]["label_score"] = round(float(issues.score[j]), 4)
        rows[i]["suggested_label"] = names[int(issues.suggested[j])]
        rows[i]["outlier_score"] = round(float(out_score[j]), 4)
        if issues.flagged[j]:
            flag(i, "label_issue", float(issues.score[j]))
        if out_flag[j]:
            flag(i, "outlier", float(out_score[j]))
    for a, b, sim in dups.within:
        rows[pos[b]]["duplicate_of"] = rows[pos[a]]["key"]
        flag(pos[b], "duplicate", sim, pos[a])
    for a, b, sim in dups.conflicts:
        flag(pos[a], "conflict", sim, pos[b])
        flag(pos[b], "conflict", sim, pos[a])
    for a, b, sim in dups.leakage:
        # Keep the evaluation side pristine: drop the copy that would be trained on.
        order = {"train": 0, "valid": 1, "test": 2}
        drop, keep = (a, b) if order.get(ok[a].split, 0) <= order.get(ok[b].split, 0) else (b, a)
        rows[pos[drop]]["duplicate_of"] = rows[pos[keep]]["key"]
        flag(pos[drop], "leakage", sim, pos[keep])
    for r in rows:
        r["keep"] = not any(i in DROPS for i in r["issues"])
    return rows, found


def _csv(rows: list[dict]) -> str:
    cols = ["key", "split", "label", "keep", "issues", "suggested_label", "label_score", "outlier_score",
            "duplicate_of", "width", "height", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, cols, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "keep": int(r["keep"]), "issues": ";".join(r["issues"])})
    return buf.getvalue()


def _gallery(decoded, rows, items, limit: int) -> str:
    tiles = []
    for i, score, partner in sorted(items, key=lambda t: (-t[1], t[0]))[:limit]:
        for j in (i,) if partner is None else (i, partner):
            if decoded[j].thumb is None:
                continue
            r = rows[j]
            better = r["suggested_label"] and r["suggested_label"] != r["label"]
            suggestion = f" → {r['suggested_label']}" if better else ""
            tiles.append((decoded[j].thumb, f"{r['key']} · {r['label']}{suggestion} · {score:.3f}", None))
    return report.gallery(tiles) if tiles else "<p class='muted'>no thumbnails (unreadable files)</p>"


def write_outputs(spec: AuditSpec, out: RunOutput, index, decoded, ok, y, issues, outliers, dups,
                  seconds: float):
    from headstart.shared.audit.findings import balance
    from headstart.shared.audit.keeplist import keep_csv

    rows, found = _flag_images(spec, index.labels, decoded, ok, issues, outliers, dups)
    counts = dict.fromkeys(index.labels, 0)
    for d in decoded:
        counts[d.item.label] += 1
    summary = {"dataset": spec.dataset, "layout": index.layout, "images": len(decoded), "readable": len(ok),
               "kept": sum(r["keep"] for r in rows), "findings": {f: len(v) for f, v in found.items()},
               "balance": balance(counts), "probe": issues.probe, "seconds": round(seconds, 1),
               "thresholds": {k: getattr(spec, k) for k in ("outlier_mads", "duplicate_threshold",
                              "leakage_threshold", "tiny_side", "max_aspect", "constant_std")}}
    out.write_text("audit.csv", _csv(rows))
    out.write_text("keep.csv", keep_csv([(r["key"], r["keep"], ";".join(i for i in r["issues"] if i in DROPS))
                                         for r in rows]))
    out.write_json("summary.json", summary)
    out.write_text("spec.yaml", spec.to_yaml())
    rep = report.Report(f"Audit: {spec.dataset}", f"{spec.backbone} · {len(decoded)} images · "
                        f"{summary['kept']} kept · probe {issues.probe}")
    rep.add("Summary", report.cards({"images": len(decoded), "kept": summary["kept"],
                                     **dict(summary["findings"])}))
    rep.add("Class balance", report.table(["label", "images"], sorted(counts.items())) +
            f"<p>largest/smallest: {summary['balance']['max_min_ratio']}; under a quarter of the mean: "
            f"{report.esc(', '.join(summary['balance']['underrepresented']) or 'none')}</p>")
    titles = {"label_issue": "Likely label errors (caption: given → suggested · score)",
              "outlier": "Off-topic / outliers (score: 1 − similarity to the label)",
              "duplicate": "Near-duplicates within a label (pairs)", "conflict": "Duplicates across labels (pairs)",
              "leakage": "Duplicates across splits: leakage (pairs)", "unreadable": "Unreadable files",
              "tiny": "Tiny images", "extreme_aspect": "Extreme aspect ratio", "near_constant": "Near-constant images"}
    for f in FINDINGS:
        if f == "unreadable" and found[f]:
            errors = [(rows[i]["key"], rows[i]["error"]) for i, _, _ in found[f]]
            rep.add(titles[f], report.table(["key", "error"], errors))
        elif found[f]:
            rep.add(f"{titles[f]}: {len(found[f])}", _gallery(decoded, rows, found[f], spec.gallery))
    out.write_text("report.html", rep.render())
    out.publish(images=len(decoded), kept=summary["kept"], findings=summary["findings"])
    log.info("audited %d images in %.1fs: %s; %d kept -> %s", len(decoded), seconds,
             ", ".join(f"{k}={v}" for k, v in summary["findings"].items() if v), summary["kept"], out.uri)
    from headstart.shared.runtime.summary import Summary
    from headstart.shared.storage.store import join

    return Summary(job="audit", out=out.uri, produced="audit.csv + keep.csv + report", metric="images kept",
                   value=summary["kept"], report=join(out.uri, "report.html"),
                   details={"images": len(decoded), "findings": summary["findings"]})
