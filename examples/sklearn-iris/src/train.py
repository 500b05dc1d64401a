"""Fit a decision tree on train.csv and pickle it into the model output folder."""

import argparse
import pickle
from pathlib import Path

import numpy as np
from sklearn.model_selection import cross_val_score
from sklearn.tree import DecisionTreeClassifier

try:  # as in Azure ML: metrics go through mlflow (Stepwise provides it to steps)
    import mlflow
except ImportError:
    mlflow = None

parser = argparse.ArgumentParser()
parser.add_argument("--train_data", required=True)
parser.add_argument("--criterion", default="gini")
parser.add_argument("--random_state", type=int, default=0)
parser.add_argument("--max_depth", type=int, default=None)
parser.add_argument("--model_output", required=True)
args = parser.parse_args()

data = np.loadtxt(Path(args.train_data, "train.csv"), delimiter=",", skiprows=1)
X, y = data[:, :-1], data[:, -1].astype(int)
# A learning curve over tree depth, logged one point per depth.
for depth in range(1, (args.max_depth or 6) + 1):
    candidate = DecisionTreeClassifier(criterion=args.criterion, max_depth=depth, random_state=args.random_state)
    score = float(cross_val_score(candidate, X, y, cv=5).mean())
    print(f"depth {depth}: cross-validated accuracy {score:.3f}")
    if mlflow:
        mlflow.log_metric("cv_accuracy", score, step=depth)

model = DecisionTreeClassifier(criterion=args.criterion, max_depth=args.max_depth, random_state=args.random_state)
model.fit(X, y)

out = Path(args.model_output)
out.mkdir(parents=True, exist_ok=True)
with open(out / "model.pkl", "wb") as fh:
    pickle.dump(model, fh)
print(f"trained a decision tree: depth {model.get_depth()}, {model.get_n_leaves()} leaves")
