"""Script of examples/word-count.yaml: reads its upstream outputs from the environment.

A script runs in its own process with FLOWFORGE_PARAMS and FLOWFORGE_UPSTREAM (JSON) set;
what it prints is kept as the attempt's output.
"""

import json
import os

ranked = json.loads(os.environ["FLOWFORGE_UPSTREAM"])["rank"]
for position, (word, n) in enumerate(ranked, start=1):
    print(f"{position}. {word}: {n}")
