"""The auto-mode report: the candidates table, the chosen configuration and why."""
from __future__ import annotations

from typing import Any

from headstart.shared.report.html import Report, cards, esc, figure, table


def auto_report(doc: dict[str, Any], lr_png: bytes | None, dataset: str) -> str:
    """Self-contained HTML of an ``auto.json`` document (plus the LR range-test plot)."""
    chosen = doc["chosen"]
    report = Report("Headstart auto mode", f"dataset {dataset} · budget {doc['budget_s'] / 60:g} min "
                                           f"· search {doc['search_s']:.0f}s")
    report.add("Choice", cards({"backbone": chosen["backbone"], "input size": chosen["image_size"],
                                "learning rate": chosen["learning_rate"],
                                "head width": chosen["head_width"],
                                "fine-tune layers": chosen["fine_tune_layers"]}))
    rows = [(c["name"], c["weights"], c["status"], c["accuracy"] if c["accuracy"] is not None else "",
             c["loss"] if c["loss"] is not None else "", round(c["seconds"], 1), c["note"])
            for c in doc["candidates"]]
    scored = doc["scored_on"]
    report.add("Candidates", table(["candidate", "weights", "status", "validation accuracy",
                                    "validation loss", "seconds", "note"], rows)
               + f"<p class='muted'>Linear probe on pooled cached features, cross-validated over "
                 f"{scored['images']} images ({esc(scored['splits'])}), cheapest candidate first.</p>")
    report.add("Why", "<ul>" + "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>"
                                       for k, v in doc["reasons"].items()) + "</ul>")
    spent = doc.get("budget")
    if spent:
        steps = [("decode the scoring subsample", spent["decode_subsample_s"])]
        steps += [(f"score {name}", sec) for name, sec in spent["candidates_s"].items()]
        steps += [("learning-rate range test", spent["lr_range_test_s"]),
                 ("search in all", spent["search_total_s"]),
                 ("left for training", spent["left_for_training_s"])]
        report.add("Budget", table(["step", "seconds"], steps)
                   + f"<p class='muted'>Budget {spent['budget_s']:.0f}s; decoding and the search may "
                     f"use {spent['search_share_s']:.0f}s of it: a candidate still being scored at "
                     "that point stops extracting and is scored on the images it has.</p>")
    if lr_png:
        report.add("Learning-rate range test", figure(lr_png, "loss against learning rate"))
    if doc["warnings"]:
        report.add("Warnings", "<ul>" + "".join(f"<li>{esc(w)}</li>" for w in doc["warnings"]) + "</ul>")
    report.add("Resolved parameters", table(["parameter", "value"],
                                            [(k, str(v)) for k, v in chosen.items()])
               + "<p class='muted'>spec.yaml holds these with auto off: rerunning it trains the same "
                 "configuration without the search.</p>")
    return report.render()
