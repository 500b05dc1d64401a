import os
import sys

import yaml

print("python", sys.version.split()[0], "in", os.environ.get("VIRTUAL_ENV", "no virtual environment"))
print("pyyaml", yaml.__version__)
