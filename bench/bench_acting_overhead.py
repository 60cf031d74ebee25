"""What policy_node adds around the model, per chunk: target < 2 ms median (two 84x84 cameras).

Measures the node's own work on real messages, in this process: converting the newest
observation (two rgb8 84x84 images, pose, gripper) as the callbacks do, assembling the To-step
observation by stamp, running the policy, checking its output, stamping the chunk and building
the ActionChunk message. The model's own time (PolicyRunner.predict) is subtracted. Prints JSON.

    .venv/bin/python bench/bench_acting_overhead.py [--runs 200] [--checkpoint DIR]
"""

import argparse
import json
import statistics
import tempfile
import time

import numpy as np

from dp_ros import conversions as conv
from dp_ros.acting.acting_loop import ActingConfig, ActingCore
from dp_ros.keys import AGENTVIEW_IMAGE, EEF_POS, EEF_QUAT, GRIPPER_QPOS, WRIST_IMAGE
from dp_ros.policy.runtime import PolicyRunner
from dp_ros.testing.checkpoints import make_tiny_checkpoint

PERIOD_NS = 50_000_000


class TimedRunner:
    """The runner with its predict() time recorded, to subtract it from the total."""

    def __init__(self, runner: PolicyRunner) -> None:
        self.runner = runner
        self.model_s = 0.0

    def __getattr__(self, name):
        return getattr(self.runner, name)

    def predict(self, obs):
        start = time.perf_counter()
        result = self.runner.predict(obs)
        self.model_s = time.perf_counter() - start
        return result


def messages(stamp_ns: int, rng: np.random.Generator):
    images = {
        key: conv.rgb_to_image(rng.integers(0, 256, (84, 84, 3), np.uint8), stamp_ns, key)
        for key in (AGENTVIEW_IMAGE, WRIST_IMAGE)
    }
    pose = conv.arrays_to_pose(np.array([0.1, 0, 1]), np.array([0, 0, 0, 1.0]), stamp_ns, "w")
    gripper = conv.array_to_joint_state(np.array([0.02, -0.02]), stamp_ns, ["a", "b"])
    return images, pose, gripper


def feed_one_step(core: ActingCore, stamp_ns: int, rng) -> float:
    """Convert and add one step's messages as the callbacks do; returns the seconds it took."""
    images, pose, gripper = messages(stamp_ns, rng)
    start = time.perf_counter()
    for key, msg in images.items():
        core.add(key, stamp_ns, conv.image_to_rgb(msg, key, (84, 84)))
    position, quaternion = conv.pose_to_arrays(pose, "pose")
    core.add(EEF_POS, stamp_ns, position)
    core.add(EEF_QUAT, stamp_ns, quaternion)
    core.add(GRIPPER_QPOS, stamp_ns, conv.joint_state_to_array(gripper, "gripper", 2))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--checkpoint", help="policy to use (default: a tiny image policy)")
    parser.add_argument("--device", default="cpu")
    options = parser.parse_args()
    checkpoint = options.checkpoint or make_tiny_checkpoint(tempfile.mkdtemp() + "/tiny")
    runner = TimedRunner(PolicyRunner.from_checkpoint(checkpoint, device=options.device))
    runner.warmup()
    config = ActingConfig(PERIOD_NS, PERIOD_NS // 2, 10**12, 0, 1e9)
    core = ActingCore(runner, config)
    rng = np.random.default_rng(0)
    stamp = 10**18
    for _ in range(runner.n_obs_steps):
        stamp += PERIOD_NS
        feed_one_step(core, stamp, rng)
    overheads_ms, models_ms = [], []
    for sequence in range(options.runs):
        stamp += PERIOD_NS
        callback_s = feed_one_step(core, stamp, rng)
        start = time.perf_counter()
        outcome = core.act(lambda s=stamp: s)  # "now" = the newest stamp: nothing is late
        msg = conv.timed_chunk_to_msg(outcome.chunk, outcome.observation_stamp_ns, sequence)
        total_s = time.perf_counter() - start + callback_s
        assert msg.horizon > 0
        overheads_ms.append((total_s - runner.model_s) * 1e3)
        models_ms.append(runner.model_s * 1e3)
    overheads_ms.sort()
    print(
        json.dumps(
            {
                "benchmark": "policy_node overhead: newest observation to ActionChunk, less model",
                "device": options.device,
                "runs": options.runs,
                "overhead_ms_median": round(statistics.median(overheads_ms), 3),
                "overhead_ms_p90": round(overheads_ms[int(0.9 * len(overheads_ms))], 3),
                "model_ms_median": round(statistics.median(models_ms), 3),
                "target_ms": 2.0,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
