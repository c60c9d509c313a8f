#!/usr/bin/env python
"""Kill real CLI jobs at random instants and named crash points, then check everything.

    python scripts/kill_harness.py --kills 240 --seed 1 --workers 2 --json report.json

See tests/reliability/kill_harness.py (what is checked) and docs/reliability.md (results).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.kill_harness import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
