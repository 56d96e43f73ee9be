"""Detector accuracy on random rendered scenes, raw and after an H.264 round trip (crf 23).

    python benchmarks/detector_accuracy.py --n 1000 --size 64 --size 256 [--workers 2]

Prints one JSON object per (size, h264) setting.
"""

import argparse
import json
import time

from kinema.eval.detector_accuracy import measure_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, action="append")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-h264", action="store_true")
    args = parser.parse_args()
    for size in args.size or [64, 256]:
        for h264 in [False] if args.no_h264 else [False, True]:
            start = time.perf_counter()
            report = measure_accuracy(args.n, size=size, h264=h264, workers=args.workers)
            report["seconds"] = round(time.perf_counter() - start, 1)
            print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
