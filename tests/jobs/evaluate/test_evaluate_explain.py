"""The evaluate report's explanations: Grad-CAM of the worst errors and a similarity section."""
from __future__ import annotations

import base64
import json
from pathlib import Path

from headstart.shared.runtime.cli import main


def test_worst_errors_embed_their_gradcam(trained_run: str, shapes_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    assert main(["evaluate", trained_run, shapes_dataset, "--out", str(out), "--worst", "3",
                 "--split", "all"]) == 0
    worst = json.loads((out / "worst_misclassified.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    html = (out / "report.html").read_text()
    assert 1 <= len(worst) <= 3  # a 2-epoch tiny model still errs on the whole dataset
    for n, w in enumerate(worst):
        assert w["gradcam"] == f"gradcam/{n}.png" and w["gradcam"] in manifest
        # embedded, not linked: the report still works once `headstart results` copies it alone
        assert base64.b64encode((out / w["gradcam"]).read_bytes()).decode() in html
    assert 'href="gradcam/' not in html and "wrong · " in html
    assert not any(k.startswith("gradcam/") and k not in {w["gradcam"] for w in worst} for k in manifest)
    assert "similarity_matrix.png" in manifest and "duplicates.csv" in manifest
    assert "Similarity" in html and "Similarity: near-duplicates" in html
