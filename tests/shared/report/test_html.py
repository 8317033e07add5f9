"""Self-contained HTML reports: everything escaped, figures embedded as data URIs."""
from __future__ import annotations

import base64
import io
import re

import numpy as np
from PIL import Image

from headstart.shared.report import plots
from headstart.shared.report.html import Report, cards, data_uri, esc, figure, gallery, table

EVIL = "<script>alert('x')</script>"


def tiny_png(color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.tile(np.asarray(color, dtype=np.uint8), (4, 4, 1))).save(buf, format="PNG")
    return buf.getvalue()


def embedded_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_data_uri_round_trips():
    png = tiny_png()
    uri = data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png
    assert data_uri(b"x", "image/jpeg").startswith("data:image/jpeg;base64,")


def test_esc():
    assert esc(EVIL) == "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    assert esc('a"b&c') == "a&quot;b&amp;c"
    assert esc(3) == "3"


def test_table_escapes_and_formats_floats():
    html = table(["label", "f1", "support"], [[EVIL, 0.123456, 7], ["b&c", 1.0, 0]])
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "b&amp;c" in html
    assert "<td>0.123</td>" in html and "<td>1.000</td>" in html and "<td>7</td>" in html
    assert html.count("<tr>") == 3


def test_cards_escape():
    html = cards({EVIL: 0.5, "n": 10})
    assert "<script>" not in html and "<b>0.500</b>" in html and "<b>10</b>" in html


def test_figure_and_gallery_embed_images_and_escape_text():
    png_a, png_b = tiny_png((255, 0, 0)), tiny_png((0, 0, 255))
    fig = figure(png_a, EVIL)
    assert "<script>" not in fig
    assert embedded_pngs(fig) == [png_a]
    gal = gallery([(png_a, f"true {EVIL}", None), (png_b, "ok", 'x.html?a=1&b="2"')])
    assert "<script>" not in gal
    assert embedded_pngs(gal) == [png_a, png_b]
    assert 'href="x.html?a=1&amp;b=&quot;2&quot;"' in gal


def test_report_is_self_contained_and_escaped():
    curves = plots.training_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]})
    report = Report(title=f"Eval {EVIL}", subtitle=EVIL)
    report.add("Summary", cards({"accuracy": 0.9}))
    report.add(f"Per class {EVIL}", table(["label", "f1"], [[EVIL, 0.5]]))
    report.add("Curves", figure(curves, "training curves"))
    html = report.render()
    assert html.startswith("<!doctype html>")
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;") >= 4   # title (twice), subtitle, heading, nav, cell
    assert '<h2 id="s1">' in html and 'href="#s1"' in html
    # No external resources: every src is a data URI and there are no links out.
    assert re.findall(r'src="(?!data:)', html) == []
    assert "http://" not in html and "https://" not in html
    (png,) = embedded_pngs(html)
    assert png == curves
    Image.open(io.BytesIO(png)).verify()


def test_gallery_marks_wrong_and_right_predictions():
    from headstart.shared.report.html import gallery as gal

    html = gal([(tiny_png(), "a", None, False), (tiny_png(), "b", None, True), (tiny_png(), "c", None)])
    assert html.count('class="tile wrong"') == 1 and html.count('class="tile right"') == 1
    assert html.count('class="tile"') == 1 and html.count("wrong · ") == 1


def test_thumbs_raw_table_configuration_and_no_negative_zero():
    from headstart.shared.report.html import configuration, num, raw_table, thumbs

    pair = thumbs(tiny_png(), tiny_png((0, 255, 0)), alt=EVIL)
    assert len(embedded_pngs(pair)) == 2 and "<script>" not in pair
    assert raw_table(["images", "x"], [[pair, esc(EVIL)]]).count("<img") == 2
    section = configuration({"dataset": EVIL, "epochs": 3}, {"backbone": "tiny", "seconds": 1.25, "gone": None})
    assert "<script>" not in section and "epochs: 3" in section and "1.2" in section and "gone" not in section
    assert num(-0.0001) == "0.000" and num(-0.5) == "-0.500"
    assert "-0.000" not in table(["x"], [[-0.0004]]) and "-0.000" not in cards({"m": -0.0002})
