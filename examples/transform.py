"""Transform step of examples/data-pipeline.yaml: summarize what the extract step fetched."""

import json
import sys
from pathlib import Path

SOURCE = Path("/tmp/data.json")


def main() -> int:
    if not SOURCE.exists():
        print(f"transform: {SOURCE} not found, nothing to transform")
        return 0
    try:
        data = json.loads(SOURCE.read_text())
    except ValueError as exc:
        print(f"transform: {SOURCE} is not JSON ({exc})", file=sys.stderr)
        return 1
    size = len(data) if isinstance(data, list | dict) else 1
    print(f"transform: read {size} record(s) from {SOURCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
