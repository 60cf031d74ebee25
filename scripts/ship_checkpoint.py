#!/usr/bin/env python3
"""Copy a trained checkpoint into the package (src/dp_ros/assets/checkpoints/NAME) with a note.

    .venv/bin/python scripts/ship_checkpoint.py outputs/lift_state/checkpoints/last lift_state \
        task=lift observations=state "evaluation=0.96 over 50 ROS episodes from seed 100000"

Only the policy is kept (the deployed EMA weights, normaliser, config); optimizer and trainer
state stay behind. The key=value pairs are stored in the checkpoint's metadata next to what the
trainer recorded, so `read_checkpoint_json(NAME)["metadata"]` says what the policy is.
"""

import argparse
import sys
from pathlib import Path

from dp_ros.policy.checkpoint import load_policy, read_checkpoint_json, save_policy

ASSETS = Path(__file__).resolve().parents[1] / "src" / "dp_ros" / "assets" / "checkpoints"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="trained checkpoint directory")
    parser.add_argument("name", help="name it is shipped under (the policy_node checkpoint value)")
    parser.add_argument("notes", nargs="*", help="key=value pairs stored in the metadata")
    args = parser.parse_args()
    notes = dict(note.split("=", 1) for note in args.notes)
    metadata = dict(read_checkpoint_json(args.source).get("metadata", {}), **notes)
    target = save_policy(load_policy(args.source), ASSETS / args.name, metadata=metadata)
    size = sum(path.stat().st_size for path in target.iterdir())
    print(f"shipped {args.source} as {args.name}: {target} ({size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
