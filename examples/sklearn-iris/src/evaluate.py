"""Score the pickled model on test.csv; print the accuracy and save it as metrics.json."""

import argparse
import json
import pickle
from pathlib import Path

import numpy as np

try:  # as in Azure ML: metrics go through mlflow (Stepwise provides it to steps)
    import mlflow
except ImportError:
    mlflow = None

parser = argparse.ArgumentParser()
parser.add_argument("--model_input", required=True)
parser.add_argument("--test_data", required=True)
parser.add_argument("--report", required=True)
args = parser.parse_args()

with open(Path(args.model_input, "model.pkl"), "rb") as fh:
    model = pickle.load(fh)
data = np.loadtxt(Path(args.test_data, "test.csv"), delimiter=",", skiprows=1)
X, y = data[:, :-1], data[:, -1].astype(int)
accuracy = float(model.score(X, y))

report = Path(args.report)
report.mkdir(parents=True, exist_ok=True)
(report / "metrics.json").write_text(json.dumps({"accuracy": accuracy, "test_rows": len(y)}, indent=2))
print(f"accuracy: {accuracy:.3f}")
if mlflow:
    mlflow.log_metric("accuracy", accuracy)
