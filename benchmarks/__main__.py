"""``python -m benchmarks``: run the benchmarks and write BENCHMARKS.md / BENCHMARKS.json (``make bench``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import run_bench
from lakehouse.config import load_settings, set_settings
from lakehouse.errors import exit_process, run_entry_point
from lakehouse.logs import setup_logging


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--scales", default="1000,10000", help="comma-separated patient counts")
    p.add_argument("--quick", action="store_true", help="short MLLP load, for a smoke run")
    p.add_argument("--no-classic", dest="classic", action="store_false",
                   help="do not run the engine-neutral stages on classic Spark (JVM)")
    p.add_argument("--classic-max", type=int, default=10000,
                   help="largest scale (patients) also run on classic Spark")
    p.add_argument("--full-max", type=int, default=10000, help="largest scale with Silver and Gold (above: Bronze)")
    p.add_argument("--cli-full-max", type=int, default=1000,
                   help="largest scale also run landing -> Gold as lakehouse processes on a fresh root")
    p.add_argument("--out", type=Path, default=Path("."), help="where BENCHMARKS.md/.json go")
    p.add_argument("--work", type=Path, help="scratch folder (default <root>/_bench)")
    p.add_argument("--root", help="lakehouse root whose _bench folder is the default scratch folder")
    args = p.parse_args(argv)
    setup_logging(None)

    def bench() -> int:
        settings = load_settings(root=args.root)
        set_settings(settings)
        results = run_bench([int(x) for x in args.scales.split(",") if x.strip()], args.out,
                            args.work or settings.root_path / "_bench", quick=args.quick, classic=args.classic,
                            classic_max_patients=args.classic_max, full_max_patients=args.full_max,
                            cli_full_max_patients=args.cli_full_max)
        written = f"{args.out / 'BENCHMARKS.md'} and {args.out / 'BENCHMARKS.json'}"
        print(f"wrote {written} ({len(results['scales'])} scales)")
        return 0

    return run_entry_point(bench)


if __name__ == "__main__":
    exit_process(main())
