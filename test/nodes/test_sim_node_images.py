"""sim_node's camera images are the scene, not just well-formed messages.

The sim steps in its own thread. OpenGL (EGL) contexts belong to the thread that created them, and
frames rendered from another thread come back as noise of the right size and encoding, which
every format check passes. So this test replays the actions the node applied in a SimEnv of its
own and compares the pictures.
"""

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from dp_msgs.msg import ActionChunk
from dp_ros import conversions as conv
from dp_ros.keys import AGENTVIEW_IMAGE, WRIST_IMAGE
from dp_ros.nodes.qos import STEP_QOS
from dp_ros.testing.observer import GraphObserver
from dp_ros.testing.processes import ChildProcess

pytestmark = [pytest.mark.ros, pytest.mark.sim]
SEED = 7
STEPS = 12


class Witness(GraphObserver):
    def __init__(self) -> None:
        super().__init__("image_witness")
        self.applied: dict[int, np.ndarray] = {}
        self.images: dict[str, dict[int, np.ndarray]] = {AGENTVIEW_IMAGE: {}, WRIST_IMAGE: {}}
        deep = QoSProfile(depth=200, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.node.create_subscription(ActionChunk, "/sim/applied_action", self._on_step, STEP_QOS)
        for key, topic in (
            (AGENTVIEW_IMAGE, "/agentview/image_raw"),
            (WRIST_IMAGE, "/wrist/image_raw"),
        ):
            self.node.create_subscription(Image, topic, self._image_handler(key, topic), deep)

    def _on_step(self, msg: ActionChunk) -> None:
        self.applied[conv.stamp_to_ns(msg.header.stamp)] = np.asarray(msg.data, np.float32)

    def _image_handler(self, key: str, topic: str):
        def on_image(msg: Image) -> None:
            stamp = conv.stamp_to_ns(msg.header.stamp)
            self.images[key][stamp] = conv.image_to_rgb(msg, topic).copy()

        return on_image


def test_images_after_steps_show_what_a_direct_simulation_renders():
    from dp_ros.sim.env import SimEnv

    witness = Witness()
    sim = ChildProcess.python(
        "-m", "dp_ros.nodes.sim_node", "--ros-args", "-p", "task:=lift", "-p", f"seed:={SEED}",
        "-p", "real_time_factor:=0.5", name="sim_node",
    )  # fmt: skip
    try:
        # The first steps' images (the episode's first image is rendered before any step).
        ok = witness.spin_until(lambda: len(witness.applied) >= STEPS + 2, timeout=120)
        assert ok, sim.output()
        witness.spin_for(0.5)
    finally:
        sim.stop()
        witness.close()

    stamps = sorted(witness.applied)[:STEPS]
    period = stamps[1] - stamps[0]
    env = SimEnv("lift")
    try:
        first = env.reset(seed=SEED)
        compared = 0
        for key in (AGENTVIEW_IMAGE, WRIST_IMAGE):
            np.testing.assert_array_equal(witness.images[key][stamps[0]], first[key])
        for stamp in stamps:
            obs, *_ = env.step(witness.applied[stamp])
            for key in (AGENTVIEW_IMAGE, WRIST_IMAGE):
                published = witness.images[key].get(stamp + period)
                if published is None:  # best effort: a frame may be missing, not wrong
                    continue
                difference = np.abs(published.astype(int) - obs[key].astype(int))
                assert difference.mean() < 1.0, (key, stamp, difference.mean())
                compared += 1
    finally:
        env.close()
    assert compared >= STEPS, compared  # most of the 2 x STEPS frames arrived and matched
