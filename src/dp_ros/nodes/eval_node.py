"""eval_node: success rate of whatever drives the sim (a policy), counted from its outcomes.

Waits until the policy reports that it acts (`policy_status_topic`), resets the sim to `seed`
(the sim gives each later episode the next seed), then counts `episodes` EpisodeOutcomes: one log
line per episode, the success rate at the end, a JSON summary (`summary`) and an MP4 of the first
`video_episodes` episodes from both cameras (`video`). It exits when done (code 0), which stops a
dp-ros graph; after `timeout` seconds it gives up with code 1 and writes what it has.
"""

import json
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import Image

from dp_msgs.msg import EpisodeOutcome, PolicyStatus
from dp_msgs.srv import ResetEnv
from dp_ros import conversions as conv
from dp_ros.files import atomic_write_text
from dp_ros.keys import AGENTVIEW_IMAGE, WRIST_IMAGE
from dp_ros.nodes.params import NodeConfig, declare_and_load, param
from dp_ros.nodes.qos import EVENT_QOS, SENSOR_QOS, STATUS_QOS
from dp_ros.nodes.spin import run_node
from dp_ros.recording.scripted import StateAssembler
from dp_ros.sim.tally import EpisodeTally

CAMERAS = (AGENTVIEW_IMAGE, WRIST_IMAGE)


@dataclass(frozen=True)
class EvalNodeConfig(NodeConfig):
    episodes: int = param(10, "Episodes to evaluate.", 1, 10**6)
    seed: int = param(
        100000, "Seed of the first evaluated episode (the sim adds one per episode).", 0, 2**31 - 1
    )
    reset_service: str = param("/sim_node/reset", "dp_msgs/ResetEnv service of the sim.")
    outcome_topic: str = param("/sim/episode_outcome", "EpisodeOutcome topic of the sim.")
    policy_status_topic: str = param(
        "/policy_node/status", "Start once this PolicyStatus says acting; empty: at once."
    )
    video: str = param("", "MP4 of the first video_episodes episodes (empty: no video).")
    video_episodes: int = param(2, "Episodes in the video.", 0, 10**6)
    agentview_topic: str = param("/agentview/image_raw", "Agent-view camera (video).")
    wrist_topic: str = param("/wrist/image_raw", "Wrist camera (video).")
    summary: str = param("", "JSON file with every episode's result (empty: none).")
    timeout: float = param(0.0, "Give up after this many seconds (exit code 1); 0: never.", 0.0)
    stall_timeout: float = param(
        300.0,
        "Give up (exit code 1) when no episode has ended for this many seconds, counted from "
        "start, so a graph whose policy never acts ends; 0: wait forever.",
        0.0,
    )


class EvalNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("eval_node", **kwargs)
        self.config: EvalNodeConfig = declare_and_load(self, EvalNodeConfig)
        cfg = self.config
        self.done = threading.Event()
        self.exit_code = 0
        self.tally = EpisodeTally(cfg.episodes, cfg.seed)
        self._policy_acting = not cfg.policy_status_topic
        self._reset_sent = False
        self._started_at = time.monotonic()
        self._progress_at = self._started_at  # the last episode end (stall_timeout)
        self._video = None
        self._frames = StateAssembler(CAMERAS)
        self._reset_client = self.create_client(ResetEnv, cfg.reset_service)
        self.create_subscription(EpisodeOutcome, cfg.outcome_topic, self._on_outcome, EVENT_QOS)
        if cfg.policy_status_topic:
            self.create_subscription(
                PolicyStatus, cfg.policy_status_topic, self._on_status, STATUS_QOS
            )
        if cfg.video and cfg.video_episodes:
            from dp_ros.sim.video import EpisodeVideo  # OpenCV only when a video is asked for

            self._video = EpisodeVideo(cfg.video, cameras=CAMERAS)
            topics = {AGENTVIEW_IMAGE: cfg.agentview_topic, WRIST_IMAGE: cfg.wrist_topic}
            for key, topic in topics.items():
                self.create_subscription(Image, topic, self._frame_handler(key, topic), SENSOR_QOS)
        self.create_timer(0.2, self._tick)
        self.get_logger().info(
            f"evaluating {cfg.episodes} episodes from seed {cfg.seed} once the policy acts"
        )

    # ---- start ---------------------------------------------------------------------------

    def _on_status(self, msg: PolicyStatus) -> None:
        if msg.state == PolicyStatus.STATE_ACTING:
            self._policy_acting = True

    def _tick(self) -> None:
        if self._stalled():
            return
        timeout = self.config.timeout
        if timeout and time.monotonic() - self._started_at > timeout and not self.done.is_set():
            self.get_logger().error(
                f"timeout after {timeout:.0f} s with {len(self.tally.results)} of "
                f"{self.config.episodes} episodes"
            )
            self._finish(exit_code=1)
            return
        if self._reset_sent or not self._policy_acting:
            return
        if not self._reset_client.service_is_ready():
            return
        self._reset_sent = True
        future = self._reset_client.call_async(ResetEnv.Request(seed=self.config.seed))
        future.add_done_callback(self._on_reset_done)

    def _stalled(self) -> bool:
        """True (and finished with code 1) once no episode ended for stall_timeout seconds."""
        limit = self.config.stall_timeout
        if not limit or self.done.is_set() or time.monotonic() - self._progress_at <= limit:
            return False
        waiting = "the policy to act" if not self._policy_acting else "an episode to end"
        self.get_logger().error(
            f"gave up: waited {limit:.0f} s for {waiting} ({len(self.tally.results)} of "
            f"{self.config.episodes} episodes done; stall_timeout)"
        )
        self._finish(exit_code=1)
        return True

    def _on_reset_done(self, future) -> None:
        response = future.result()
        self.tally.begin(int(response.episode))
        self.get_logger().info(f"sim reset: {response.message}")

    # ---- episodes ------------------------------------------------------------------------

    def _on_outcome(self, msg: EpisodeOutcome) -> None:
        result = self.tally.add(msg.episode, msg.success, msg.steps, msg.reason)
        if result is None:
            return
        self._progress_at = time.monotonic()
        self.get_logger().info(self.tally.line(result))
        if self.tally.done:
            self._finish(exit_code=0)

    def _frame_handler(self, key: str, topic: str):
        def on_frame(msg: Image) -> None:
            if self._video is None or self.tally.first_episode is None:
                return
            if len(self.tally.results) >= self.config.video_episodes:
                return
            image = conv.image_to_rgb(msg, topic).copy()
            frame = self._frames.add(conv.stamp_to_ns(msg.header.stamp), {key: image})
            if frame is not None:
                self._video.write(frame)

        return on_frame

    def _finish(self, exit_code: int) -> None:
        if self.done.is_set():
            return
        tally = self.tally
        self.get_logger().info(
            f"success rate: {tally.successes}/{len(tally.results)} = {tally.success_rate:.2f} "
            f"(seeds {tally.first_seed}..{tally.first_seed + max(len(tally.results), 1) - 1})"
        )
        self._close_video()
        if self.config.summary:
            summary = dict(tally.summary(), complete=exit_code == 0)
            path = Path(self.config.summary)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(summary, indent=1))
            self.get_logger().info(f"summary written to {self.config.summary}")
        self.exit_code = exit_code
        self.done.set()

    def _close_video(self) -> None:
        if self._video is not None:
            self._video.close()
            if self._video.n_frames:
                self.get_logger().info(
                    f"video: {self._video.n_frames} frames written to {self.config.video}"
                )
            self._video = None

    def close(self) -> None:
        self._close_video()


def main(args: list[str] | None = None) -> int:
    return run_node("eval_node", EvalNode, args, config_type=EvalNodeConfig, summary=__doc__)


if __name__ == "__main__":
    sys.exit(main())
