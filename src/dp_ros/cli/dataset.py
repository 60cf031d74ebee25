"""`dp-dataset`: look at, edit and export episode stores.

    dp-dataset info STORE [--json] [--image-sample PNG]
    dp-dataset video STORE EP [-o OUT.mp4]       cameras side by side, action curves under them
    dp-dataset plot STORE EP [-o OUT.png]        actions, eef position and gripper over time
    dp-dataset remove STORE EP [EP ...]          rewrites the store without them (atomic)
    dp-dataset merge A B [C ...] OUT             a new store with every episode of the inputs
    dp-dataset view STORE [-o DIR] [--episodes N]   an HTML page: summary, videos, plots
    dp-dataset export-lerobot STORE OUT [--robot-type panda]   a LeRobot v3.0 dataset

Exit status: 0 done, 2 bad input (the message names it). Replaces `dp-ros-info` (the environment
report is `python -m dp_ros.cli.info`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dp_ros.data.episode_rules import StoreError


def _open(path: str):
    from dp_ros.data.store import EpisodeStore

    return EpisodeStore.open(path)


def _episode(store, index: int) -> int:
    store.episode_slice(index)  # IndexError naming the range when out of it
    return index % store.n_episodes


def cmd_info(args) -> int:
    from dp_ros.data.inspect import summarize, write_image_sample

    store = _open(args.store)
    summary = summarize(store)
    print(json.dumps(summary.as_dict(), indent=1) if args.json else summary.text())
    if args.image_sample:
        written = write_image_sample(store, args.image_sample)
        print(f"image sample: {written}" if written else "image sample: the store has no camera")
    return 0


def cmd_video(args) -> int:
    from dp_ros.data.views import video_episode

    store = _open(args.store)
    episode = _episode(store, args.episode)
    out = args.output or f"episode_{episode}.mp4"
    print(video_episode(store, episode, out, progress=not args.no_progress))
    return 0


def cmd_plot(args) -> int:
    from dp_ros.data.views import plot_episode

    store = _open(args.store)
    episode = _episode(store, args.episode)
    print(plot_episode(store, episode, args.output or f"episode_{episode}.png"))
    return 0


def cmd_remove(args) -> int:
    from dp_ros.data.edit import remove_episodes

    left = remove_episodes(args.store, args.episodes, progress=not args.no_progress)
    print(f"removed {len(set(args.episodes))} episode(s); {left} left in {args.store}")
    return 0


def cmd_merge(args) -> int:
    from dp_ros.data.edit import merge_stores

    *inputs, output = args.stores
    if len(inputs) < 2:
        raise ValueError("merge needs at least two input stores and an output: A B OUT")
    n, notes = merge_stores(inputs, output, progress=not args.no_progress)
    for note in notes:
        print(f"left out (duplicate): {note}")
    print(f"merged {len(inputs)} stores into {output}: {n} episodes")
    return 0


def cmd_view(args) -> int:
    from dp_ros.data.views import write_view

    store = _open(args.store)
    episodes = list(range(min(args.episodes, store.n_episodes)))
    out = args.output or f"{Path(args.store).name}_view"
    index = write_view(store, out, episodes, progress=not args.no_progress)
    print(f"open {index.resolve().as_uri()} in a browser")
    return 0


def cmd_export(args) -> int:
    from dp_ros.data.lerobot_export import export_lerobot

    out = export_lerobot(
        _open(args.store), args.output, robot_type=args.robot_type, progress=not args.no_progress
    )
    print(f"LeRobot v3.0 dataset written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dp-dataset", description="Look at, edit and export episode stores."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        p.add_argument("--no-progress", action="store_true", help="no progress bars")
        return p

    p = command("info", cmd_info, "episodes, frames, keys, value ranges, per-episode metadata")
    p.add_argument("store")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--image-sample", metavar="PNG", help="write the first frame's cameras here")
    p = command("video", cmd_video, "MP4 of one episode: cameras and action curves")
    p.add_argument("store")
    p.add_argument("episode", type=int)
    p.add_argument("-o", "--output", help="MP4 path (default episode_EP.mp4)")
    p = command("plot", cmd_plot, "PNG of one episode's actions and end-effector state")
    p.add_argument("store")
    p.add_argument("episode", type=int)
    p.add_argument("-o", "--output", help="PNG path (default episode_EP.png)")
    p = command("remove", cmd_remove, "remove episodes (the store is rewritten atomically)")
    p.add_argument("store")
    p.add_argument("episodes", type=int, nargs="+")
    p = command("merge", cmd_merge, "merge stores A B ... into a new store OUT")
    p.add_argument("stores", nargs="+", metavar="STORE", help="A B [C ...] OUT")
    p = command("view", cmd_view, "an HTML page with the summary, videos and plots")
    p.add_argument("store")
    p.add_argument("-o", "--output", help="directory (default STORE_view)")
    p.add_argument("--episodes", type=int, default=5, help="episodes with video and plot")
    p = command("export-lerobot", cmd_export, "write the store as a LeRobot v3.0 dataset")
    p.add_argument("store")
    p.add_argument("output")
    p.add_argument("--robot-type", default="panda", help="info.json robot_type")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (StoreError, ValueError, IndexError, OSError, KeyError) as error:
        print(f"dp-dataset {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
