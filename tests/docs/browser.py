"""Render an HTML report in headless Chromium and report what a reader would see broken.

Used by ``tests/docs/test_reports_browser.py`` and ``make report-check``. The page is loaded
from its own folder (as ``headstart results --to DIR`` leaves it), a small script checks it
after load and writes its findings into the DOM, and ``--dump-dom`` hands them back:

* broken images (not loaded, or zero-sized) and links to files beside the report (they break
  once the report is copied alone);
* the section headings present (``h2``);
* horizontal overflow of the page at a 1280 px wide window.

    python tests/docs/browser.py REPORT.html [...] [--screens DIR]
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--window-size=1280,900"]
MARK = "hs-browser-check"
_SCRIPT = """<script>window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
                   .map(function (i) { return (i.alt || i.src).slice(0, 80); });
  var links = Array.from(document.querySelectorAll('a[href]')).map(function (a) {
      return a.getAttribute('href'); })
      .filter(function (h) { return !/^(#|data:|https?:|mailto:)/.test(h); });
  var root = document.documentElement;
  var out = {images: imgs.length, broken: broken, relative_links: links,
             sections: Array.from(document.querySelectorAll('h2')).map(function (h) {
                 return h.textContent; }),
             scroll_width: root.scrollWidth, client_width: root.clientWidth};
  var pre = document.createElement('pre'); pre.id = '%s';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
});</script>""" % MARK  # noqa: UP031 - the JS braces would need doubling in a format string


def chromium() -> str | None:
    """The Chromium binary, or None (``apt-get install -y chromium``)."""
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)


def _run(binary: str, args: list[str], timeout: float) -> str:
    with tempfile.TemporaryDirectory(prefix="hs-chromium-") as profile:
        done = subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-500:]}")
    return done.stdout


def check(report: Path, timeout: float = 90.0) -> dict:
    """Load ``report`` (a copy with the checking script, in the same folder) and return the
    findings: images, broken, relative_links, sections, scroll_width, client_width."""
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium not found: apt-get install -y chromium")
    report = Path(report).resolve()
    probe = report.with_name(f".{report.stem}.check.html")
    html = report.read_text(encoding="utf-8")
    probe.write_text(html.replace("</body>", _SCRIPT + "</body>"), encoding="utf-8")
    try:
        dom = _run(binary, ["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], timeout)
    finally:
        probe.unlink(missing_ok=True)
    found = re.search(rf'<pre id="{MARK}">(.*?)</pre>', dom, re.S)
    if not found:
        raise RuntimeError(f"the check script did not run in {report}")
    import html as html_lib

    return json.loads(html_lib.unescape(found.group(1)))


def screenshot(report: Path, png: Path, height: int = 2400, timeout: float = 90.0) -> Path:
    """A full-width screenshot of ``report`` (the first ``height`` pixels) to ``png``."""
    binary = chromium()
    if binary is None:
        raise RuntimeError("chromium not found: apt-get install -y chromium")
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(binary, [f"--window-size=1280,{height}", f"--screenshot={png.resolve()}",
                  Path(report).resolve().as_uri()], timeout)
    return png


def problems(found: dict, required: list[str]) -> list[str]:
    """What is wrong with a rendered report, as sentences (empty: fine)."""
    out = []
    if found["broken"]:
        out.append(f"{len(found['broken'])} broken image(s): {found['broken'][:3]}")
    if found["relative_links"]:
        out.append(f"links to files not in the report: {found['relative_links'][:3]}")
    missing = [s for s in required if not any(h.startswith(s) for h in found["sections"])]
    if missing:
        out.append(f"missing sections {missing} (has {found['sections']})")
    if len(set(found["sections"])) != len(found["sections"]):
        out.append(f"duplicated sections: {found['sections']}")
    if found["scroll_width"] > found["client_width"] + 1:
        out.append(f"horizontal overflow: {found['scroll_width']}px wide in a "
                   f"{found['client_width']}px window")
    return out


def main(argv: list[str]) -> int:
    screens = None
    if "--screens" in argv:
        i = argv.index("--screens")
        screens, argv = Path(argv[i + 1]), argv[:i] + argv[i + 2:]
    bad = 0
    for name in argv:
        found = check(Path(name))
        issues = problems(found, [])
        print(f"{name}: {found['images']} images, sections {found['sections']}"
              + (f"; PROBLEMS: {'; '.join(issues)}" if issues else "; ok"))
        bad += bool(issues)
        if screens:
            screenshot(Path(name), screens / (Path(name).parent.name + "-" + Path(name).stem + ".png"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
