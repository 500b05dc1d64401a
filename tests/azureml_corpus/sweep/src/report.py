import argparse
import json
import os

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
args = parser.parse_args()
with open(os.path.join(args.model, "model.json")) as handle:
    print("best model:", json.load(handle))
