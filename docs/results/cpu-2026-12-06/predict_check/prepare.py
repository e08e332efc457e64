"""Unpacks a random 5-way 1-shot task of held-out Omniglot characters.

Test classes: those of the run's split (config `dataset`, e.g. 'vinyals')
per metalearn.data.omniglot.splits.split_labels; label -> alphabet/character
from the run's Omniglot cache; PNGs from the original zips. Each chosen
character's 20 PNGs, converted the way the cache builder does, are checked
against the cache's 28x28 images (so the label -> folder mapping is right).

usage: prepare.py SEED OUT_DIR [--binary]
  writes OUT_DIR/support/<class>/<png>, OUT_DIR/query/qNNN.png (shuffled,
  anonymous names), OUT_DIR/labels.csv (file,label).
  --binary: write the cache's own 28x28 {0,1} images (as 0/255 black ink on
  white PNGs) instead of the original 105x105 PNGs.
"""
import csv, io, json, sys, zipfile
from pathlib import Path
import numpy as np
from PIL import Image
from metalearn.data.omniglot import splits, build

WORKDIR = Path("/work/readme_clone/runs/compare/20261206-000834/maml")
CACHE = Path("/tmp/emptyhome/.cache/metalearn/omniglot")
ZIPS = Path("/work/shared/data/omniglot")
WAYS, SHOTS, QUERIES = 5, 1, 15

seed, out = int(sys.argv[1]), Path(sys.argv[2])
binary = "--binary" in sys.argv
config = json.loads((WORKDIR / "config.json").read_text())
assert (config["n_way"], config["k_shot"]) == (WAYS, SHOTS), config
bg, ev = (np.load(CACHE / f"{s}.npz") for s in ("train", "test"))
test_labels = splits.split_labels(config["dataset"], bg["labels"],
                                  ev["labels"]).test
train_labels = splits.split_labels(config["dataset"], bg["labels"],
                                   ev["labels"]).train
assert not set(test_labels) & set(train_labels)
rng = np.random.default_rng(seed)
chosen = rng.choice(test_labels, WAYS, replace=False)

(out / "support").mkdir(parents=True)
(out / "query").mkdir()
rows = []
for label in chosen:
  src, part = (bg, "background") if label < 964 else (ev, "evaluation")
  i = int(np.flatnonzero(src["labels"] == label)[0])
  alphabet, char = str(src["alphabets"][i]), int(src["characters"][i])
  folder = f"images_{part}/{alphabet}/character{char + 1:02d}/"
  with zipfile.ZipFile(ZIPS / f"images_{part}.zip") as z:
    names = sorted(n for n in z.namelist()
                   if n.startswith(folder) and n.endswith(".png"))
    pngs = [z.read(n) for n in names]
  assert len(pngs) == 20, (folder, len(pngs))
  # The cache builder's conversion: ink mask, Lanczos to 28x28, > 0.4.
  mine = np.stack([build.downsample(build.ink_mask(build.decode_png(p)))
                   for p in pngs])
  cached = src["images"][i]
  key = lambda a: sorted(x.tobytes() for x in a)
  assert key(mine) == key(cached), f"label {label}: {folder} != cache"
  pick = rng.permutation(20)[:SHOTS + QUERIES]
  cls = f"{alphabet}__char{char + 1:02d}"
  (out / "support" / cls).mkdir()
  for j, k in enumerate(pick):
    if binary:
      data = Image.fromarray(((1 - mine[k]) * 255).astype(np.uint8))
    else:
      data = Image.open(io.BytesIO(pngs[k]))
    name = Path(names[k]).name
    if j < SHOTS:
      data.save(out / "support" / cls / name)
    else:
      rows.append((data, cls, name))
order = rng.permutation(len(rows))
with open(out / "labels.csv", "w", newline="") as f:
  w = csv.writer(f)
  w.writerow(["file", "label", "source"])
  for q, k in enumerate(order):
    data, cls, name = rows[k]
    data.save(out / "query" / f"q{q:03d}.png")
    w.writerow([f"q{q:03d}.png", cls, name])
print(f"seed {seed}: labels {sorted(int(l) for l in chosen)} ->",
      sorted(p.name for p in (out / "support").iterdir()))
