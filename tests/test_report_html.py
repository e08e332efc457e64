"""report.html: self-contained, and a real headless browser shows it.

A comparison's report is written from fake records (no training) by the
same ``write_report`` a run uses; Chromium then loads the page offline: no
console message, every picture decoded, and a screenshot in which every
picture's area is drawn.
"""

import base64
import json
import os
from pathlib import Path
import re
import shutil
import subprocess

import ml_collections
import numpy as np
import pytest

from metalearn import compare
from metalearn import report
from tests.test_report import run_results

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser",
                                           "google-chrome")
                 if shutil.which(n)), None)
WIDTH = 1280
# CI installs Chromium (.ci/run); there the browser test must run, not skip.
assert CHROMIUM or not os.environ.get("CI"), "CI needs chromium (.ci/run)"
_CHECK = """<script>
window.addEventListener("load", function () {
  var images = [];
  document.querySelectorAll("img").forEach(function (img) {
    var r = img.getBoundingClientRect();
    images.push({alt: img.alt, complete: img.complete,
                 width: img.naturalWidth, height: img.naturalHeight,
                 x: r.left + window.scrollX, y: r.top + window.scrollY,
                 w: r.width, h: r.height});
  });
  var pre = document.createElement("pre");
  pre.id = "image-check";
  pre.textContent = JSON.stringify(
      {images: images, height: document.documentElement.scrollHeight});
  document.body.appendChild(pre);
});
</script>
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
  """A comparison's output directory, written from fake records."""
  out = tmp_path_factory.mktemp("report")
  results = [report.as_result(r) for r in run_results()]
  for i, r in enumerate(results):
    if r.name == "mamlpp":
      results[i] = r._replace(inner_lrs={"conv0/kernel": [0.1, -0.02],
                                         "head/kernel": [0.3, 0.2]})
  config = ml_collections.ConfigDict({"algorithm": "maml", "n_way": 5})
  compare.write_report(results, config, out, ["Machine: test"], 1.0,
                       "experiments/compare.py", False, lambda _: None)
  return out


def test_html_is_self_contained_and_matches_results(written):
  page = (written / "report.html").read_text()
  summary = json.loads((written / "results.json").read_text())
  # Every picture of results.json inline, byte for byte the PNG beside it.
  inline = dict(re.findall(
      r'<figure id="([^"]+)">\s*<img src="data:image/png;base64,([^"]+)"',
      page))
  assert list(inline) == summary["plots"]
  assert "task_accuracy.png" in inline and "tradeoff.png" in inline
  for name, data in inline.items():
    assert base64.b64decode(data) == (written / name).read_bytes(), name
  # Nothing to fetch: no external URL, script, stylesheet or font.
  assert not re.search(r"https?://|<script|<link|@import|url\(", page)
  assert re.findall(r'src="([^"]+)"', page) == [
      f"data:image/png;base64,{inline[n]}" for n in inline]
  # The tables are there, the same numbers as the markdown.
  md = (written / "report.md").read_text()
  for r in summary["algorithms"].values():
    cell = report.text.pct(r["test_accuracy"], r["test_ci95"])
    assert f"<td>{cell}</td>" in page and f"| {cell} |" in md
  assert page.count("<table>") == sum(
      line.startswith("|---|") for line in md.splitlines())
  assert "74.16%" in page
  assert "<h2>Recommendation</h2>" in page
  assert "Machine: test" in page


def _chromium(*flags) -> subprocess.CompletedProcess:
  return subprocess.run(
      [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox",
       "--hide-scrollbars", "--force-device-scale-factor=1",
       "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr",
       "--v=0", "--virtual-time-budget=5000", *flags],
      capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (.ci/run "
                    "installs it)")
def test_headless_browser_shows_every_picture(written, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  page = written / "report.html"
  # The page as written: no console message at all.
  shot = tmp_path / "shot.png"
  probe = tmp_path / "check.html"
  probe.write_text(page.read_text().replace("</body>", _CHECK + "</body>"))
  dom = _chromium(f"--window-size={WIDTH},1000", "--dump-dom",
                  probe.as_uri())
  assert dom.returncode == 0, dom.stderr[-2000:]
  assert ":CONSOLE" not in dom.stderr, dom.stderr[-2000:]
  found = re.search(r'<pre id="image-check">(.*?)</pre>', dom.stdout, re.S)
  assert found, dom.stdout[-2000:]
  check = json.loads(found.group(1).replace("&quot;", '"'))
  summary = json.loads((written / "results.json").read_text())
  assert [i["alt"] for i in check["images"]] == summary["plots"]
  for i in check["images"]:
    with Image.open(written / i["alt"]) as png:
      assert (i["width"], i["height"]) == png.size, i
    assert i["complete"] and i["w"] > 100 and i["h"] > 100, i
  # A screenshot of the whole page: every picture's area is drawn (not
  # blank), as is the page itself.
  height = int(check["height"]) + 20
  taken = _chromium(f"--window-size={WIDTH},{height}",
                    f"--screenshot={shot}", page.as_uri())
  assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
  assert ":CONSOLE" not in taken.stderr, taken.stderr[-2000:]
  with Image.open(shot) as im:
    pixels = np.asarray(im.convert("L"), np.float64)
  assert pixels.shape == (height, WIDTH)
  assert pixels.std() > 10
  for i in check["images"]:
    x, y = int(i["x"]), int(i["y"])
    area = pixels[y:y + int(i["h"]), x:x + int(i["w"])]
    assert area.size and area.std() > 10, i["alt"]
    assert (area < 200).mean() > 0.01, i["alt"]  # lines and text drawn
