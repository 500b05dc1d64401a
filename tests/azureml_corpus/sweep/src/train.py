"""A toy trial: its score is a known function of its parameters, best near lr=0.1, width=32, dropout=0.2."""

import argparse
import json
import math
import os

import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--learning-rate", type=float, required=True)
parser.add_argument("--width", type=int, required=True)
parser.add_argument("--dropout", type=float, required=True)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--model", required=True)
args = parser.parse_args()

target = 1.0 - abs(math.log10(args.learning_rate) + 1) / 3 - abs(args.width - 32) / 64 - abs(args.dropout - 0.2)
with mlflow.start_run():
    mlflow.log_params({"learning_rate": args.learning_rate, "width": args.width, "dropout": args.dropout})
    for epoch in range(args.epochs):
        # The score approaches its target as epochs go by: intermediate reports for early termination.
        mlflow.log_metric("score", target * (epoch + 1) / args.epochs, step=epoch)

os.makedirs(args.model, exist_ok=True)
with open(os.path.join(args.model, "model.json"), "w") as handle:
    json.dump({"learning_rate": args.learning_rate, "width": args.width, "dropout": args.dropout}, handle)
print(f"score {target:.4f}")
