"""Train a linear classifier on the digits one epoch at a time, logging test accuracy per epoch."""

import argparse
import pickle
from pathlib import Path

import mlflow  # Stepwise's shim in a step, Azure ML's mlflow there: the script runs in both
import numpy as np
from sklearn.linear_model import SGDClassifier

parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--epochs", type=int)
parser.add_argument("--alpha", type=float)
parser.add_argument("--model")
args = parser.parse_args()

data = np.load(Path(args.data) / "digits.npz")
classes = np.unique(data["y_train"])
model = SGDClassifier(alpha=args.alpha, random_state=0)
for epoch in range(1, args.epochs + 1):
    model.partial_fit(data["x_train"], data["y_train"], classes=classes)
    accuracy = model.score(data["x_test"], data["y_test"])
    mlflow.log_metric("accuracy", accuracy, step=epoch)
    print(f"epoch {epoch}: accuracy {accuracy:.3f}")

out = Path(args.model)
out.mkdir(parents=True, exist_ok=True)
(out / "model.pkl").write_bytes(pickle.dumps(model))
(out / "accuracy.txt").write_text(f"{accuracy:.4f}\n")
