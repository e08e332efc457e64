"""usage: score.py LABELS_CSV PREDICTIONS_CSV -> prints accuracy."""
import csv, sys
truth = {r["file"]: r["label"] for r in csv.DictReader(open(sys.argv[1]))}
pred = {r["file"]: r["predicted"] for r in csv.DictReader(open(sys.argv[2]))}
assert set(truth) == set(pred), (len(truth), len(pred))
hits = sum(pred[f] == truth[f] for f in truth)
print(f"{hits}/{len(truth)} = {hits / len(truth):.4f}")
