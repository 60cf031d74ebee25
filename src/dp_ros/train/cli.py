"""Command line of the trainer: a YAML config plus `section.field=value` overrides."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence

import yaml

from dp_ros.train.config import TrainConfig, TrainConfigError

EPILOG = """\
examples:
  dp-train config/train/lift_lowdim.yaml dataset.path=data/lift.zarr
  dp-train config/train/lift_image.yaml fabric.devices=4 training.batch_size=64
  dp-train config/train/lift_image.yaml output.dir=outputs/run1 output.resume=last
"""


def resume_command(argv: Sequence[str] | None) -> str:
    """This run's command line with `output.resume=last` (replacing any other resume point)."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept = [arg for arg in args if not arg.startswith("output.resume=")]
    return shlex.join(["dp-train", *kept, "output.resume=last"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp-train",
        description="Train a Diffusion Policy on an episode store.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", nargs="?", help="training config YAML (see config/train/)")
    parser.add_argument("overrides", nargs="*", help="section.field=value, e.g. optim.lr=3e-4")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config and exit"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config_path, overrides = args.config, list(args.overrides)
    if config_path is not None and "=" in config_path:  # only overrides were given
        config_path, overrides = None, [config_path, *overrides]
    try:
        config = TrainConfig.from_yaml(config_path, overrides)
        if args.print_config:
            print(yaml.safe_dump(config.to_dict(), sort_keys=False))
            return 0
        from dp_ros.train.trainer import Trainer  # torch and lightning load only to train

        summary = Trainer(config).run()
    except TrainConfigError as error:
        print(f"dp-train: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupted:
        if getattr(interrupted, "checkpoint", None) is None:
            print("dp-train: aborted (nothing saved since the last checkpoint)", file=sys.stderr)
            return 130
        print(f"dp-train: {interrupted}", file=sys.stderr)
        print(f"dp-train: resume with: {resume_command(argv)}", file=sys.stderr)
        return 130
    if summary["rank"] == 0:
        print(json.dumps({k: summary[k] for k in ("steps", "epochs", "best", "checkpoints")}))
    return 0
