"""Split scikit-learn's bundled iris data (no download) into train.csv and test.csv."""

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

parser = argparse.ArgumentParser()
parser.add_argument("--test_size", type=float, default=0.25)
parser.add_argument("--random_state", type=int, default=0)
parser.add_argument("--train_data", required=True)
parser.add_argument("--test_data", required=True)
args = parser.parse_args()

iris = load_iris()
X_train, X_test, y_train, y_test = train_test_split(
    iris.data, iris.target, test_size=args.test_size, random_state=args.random_state, stratify=iris.target
)
header = ",".join([*iris.feature_names, "target"])
for folder, X, y in ((args.train_data, X_train, y_train), (args.test_data, X_test, y_test)):
    Path(folder).mkdir(parents=True, exist_ok=True)
    name = "train.csv" if folder == args.train_data else "test.csv"
    np.savetxt(Path(folder, name), np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%g")
print(f"train rows: {len(y_train)}, test rows: {len(y_test)}")
