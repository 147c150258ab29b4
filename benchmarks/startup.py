"""Start-up cost of the command line and the package: `fsm2kit --help`, `import fsm2kit`.

Times each command several times in fresh interpreters for this checkout and, optionally, for
another checkout (e.g. a worktree of an older commit) in the same run, and prints a table.

    python benchmarks/startup.py                          # this checkout
    git worktree add /tmp/fsm2kit-old 1bab51b
    python benchmarks/startup.py --other /tmp/fsm2kit-old  # before vs after, one run
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
COMMANDS = {
    "fsm2kit --help": "import sys; sys.argv = ['fsm2kit', '--help']\ntry:\n    from fsm2kit.cli import main; main()\nexcept SystemExit: pass",
    "import fsm2kit": "import fsm2kit",
    "import fsm2kit.cli": "import fsm2kit.cli",
}
PROBE = "import sys; print(int('torch' in sys.modules))"


def _time(root: Path, code: str, repeat: int) -> tuple[float, float, bool]:
    env = dict(os.environ, PYTHONPATH=str(root))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=root, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    torch = subprocess.run([sys.executable, "-c", code + "\n" + PROBE], cwd=root, env=env, check=True,
                           capture_output=True, text=True).stdout.strip().endswith("1")
    return statistics.median(times), min(times), torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", type=Path, default=None, help="another checkout to time in the same run")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    roots = [("this checkout", HERE)] + ([("other", args.other.resolve())] if args.other else [])
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, median/min of {args.repeat} fresh runs")
    print(f"{'checkout':<14} {'command':<20} {'median s':>9} {'min s':>7}  torch loaded")
    for label, root in roots:
        for name, code in COMMANDS.items():
            med, best, torch = _time(root, code, args.repeat)
            print(f"{label:<14} {name:<20} {med:9.3f} {best:7.3f}  {'yes' if torch else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
