"""Split scikit-learn's bundled digits into train and test arrays (no download)."""

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

parser = argparse.ArgumentParser()
parser.add_argument("--test_size", type=float, default=0.25)
parser.add_argument("--out")
args = parser.parse_args()

digits = load_digits()
x_train, x_test, y_train, y_test = train_test_split(
    digits.data / 16.0, digits.target, test_size=args.test_size, random_state=0, stratify=digits.target
)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
np.savez(out / "digits.npz", x_train=x_train, x_test=x_test, y_train=y_train, y_test=y_test)
print(f"train: {len(y_train)} images, test: {len(y_test)} images")
