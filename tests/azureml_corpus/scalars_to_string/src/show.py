import argparse

parser = argparse.ArgumentParser()
for name in ("--optimizer", "--image_size", "--ratio"):
    parser.add_argument(name, type=str)
args = parser.parse_args()
for name, value in vars(args).items():
    print(f"{name}={value!r}")
