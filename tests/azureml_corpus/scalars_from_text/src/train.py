import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--shuffle", choices=["True", "False"])
parser.add_argument("--augment", choices=["True", "False"])
parser.add_argument("--epochs", type=int)
parser.add_argument("--learning_rate", type=float)
args = parser.parse_args()
print(f"shuffle={args.shuffle} augment={args.augment}")
print(f"epochs={args.epochs} learning_rate={args.learning_rate}")
