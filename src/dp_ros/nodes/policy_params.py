"""policy_node's parameters, declared once with descriptors and validated into a frozen
dataclass (code moved out of policy_node.py, not changed).
"""

from dataclasses import dataclass

from dp_ros.acting.acting_loop import ActingConfig
from dp_ros.acting.continuation import CONTINUATION_MODES, WEIGHT_SCHEDULES, ContinuationConfig
from dp_ros.acting.inputs import STREAMS
from dp_ros.nodes.params import RobotStreamParams, param

NS = 1_000_000_000


@dataclass(frozen=True)
class PolicyNodeConfig(RobotStreamParams):
    checkpoint: str = param("", "Policy checkpoint directory (policy.safetensors + policy.json).")
    device: str = param("cpu", "Torch device for inference: cpu, cuda or cuda:N.")
    dtype: str = param(
        "float32", "Weight dtype for inference.", choices=("float32", "bfloat16", "float16")
    )
    half_weights: bool = param(
        False,
        "On a CPU: fp16 denoiser weights packed for fbgemm, fp32 activations "
        "(DDIM-16 2.4x faster on an AVX2 CPU; actions within ~3e-3 of fp32). Ignored on a GPU.",
    )
    num_inference_steps: int = param(0, "Denoising steps; 0 keeps the checkpoint's.", 0, 1000)
    sampler: str = param(
        "",
        "Sampler; empty keeps the checkpoint's (a consistency student only runs 'consistency').",
        choices=("", "ddpm", "ddim", "consistency"),
    )
    seed: int = param(0, "Seed of the sampler's noise (reset restores it).", 0, 2**31 - 1)
    object_topic: str = param("", "Object state (sensor_msgs/JointState); simulation only.")
    action_topic: str = param("/action_chunk", "Where ActionChunks are published.")
    episode_topic: str = param(
        "",
        "dp_msgs/EpisodeOutcome topic (simulation): each outcome starts a new episode at its "
        "stamp (history cleared, sampler re-seeded). Empty: none.",
    )
    frame_id: str = param("", "Frame the published deltas are expressed in.")
    control_period: float = param(
        0.05, "Seconds between observation steps and between actions (as in training).", 1e-3, 10
    )
    sync_tolerance: float = param(
        0.025, "Max seconds between an observation instant and the message used for it.", 0, 10
    )
    max_observation_age: float = param(
        0.3, "Refuse to act when the newest complete observation is older (s).", 1e-3, 60
    )
    exec_latency: float = param(
        0.0, "The driver's own latency (s); steps due before now + this are not offered.", 0, 10
    )
    action_limit: float = param(1.0, "Refuse chunks with any |action| above this.", 0, 1e6)
    replan_lead_steps: int = param(
        1,
        "Steps before the current chunk's Ta executed steps run out, on top of the inference "
        "time, at which the next inference starts: fewer executes more of each chunk, more "
        "leaves slack.",
        0,
        100,
    )
    offered_rows: int = param(
        0,
        "Rows offered per chunk from the newest observation's instant on (latency eats into "
        "them, not into the executed steps); 0: all the horizon has (T - To + 1).",
        0,
        1000,
    )
    continuation: str = param(
        "inpaint",
        "none: every chunk from fresh noise; inpaint: the rows that execute while the next "
        "chunk is computed are frozen to the current chunk's, and an overlap after them is "
        "guided towards it (training-free; no extra denoiser evaluations).",
        choices=CONTINUATION_MODES,
    )
    continuation_overlap_steps: int = param(
        8, "Rows after the frozen ones guided towards the current chunk (inpaint).", 0, 1000
    )
    continuation_schedule: str = param(
        "linear",
        "Weights of the overlap rows, decaying from 1 to 0: hard (frozen rows only, no "
        "overlap), linear or exponential.",
        choices=WEIGHT_SCHEDULES,
    )
    start_enabled: bool = param(True, "Act as soon as activated (else wait for ~/enable).")
    status_rate: float = param(2.0, "Status messages per second (plus one per change).", 0.1, 100)
    debug_inference_delay: float = param(
        0.0, "Extra seconds after each inference (tests of late-step handling only).", 0, 10
    )
    future_stamp_tolerance: float = param(
        0.5,
        "How far (s) an input's stamp may lie ahead of this node's clock; further is refused. "
        "The clock going back by more clears the observation histories.",
        0,
        60,
    )
    input_guard: float = param(
        0.0,
        "Hold when a low-dim input lies further outside its training range (the checkpoint's "
        "normaliser min/max) than this many ranges, per feature; 0: no guard. Off by default: "
        "a Lift closed loop over ROS tripped it at 5 (README); measure your robot's with "
        "bench/bench_input_guard.py first.",
        0,
        1e9,
    )
    input_check_timeout: float = param(
        10.0,
        "configure waits up to this long for one message of each state input (object, "
        "gripper) and refuses a size the checkpoint was not trained on; 0: no check.",
        0,
        600,
    )
    resize_images: bool = param(
        True,
        "Bring camera images of any size to the checkpoint's (INTER_AREA, as recorder_node "
        "does); false: refuse any other size.",
    )
    center_crop: bool = param(
        False,
        "Before resizing, crop the centre to the checkpoint's aspect ratio (a 640x480 frame "
        "for an 84x84 policy: its central 480x480); use what recording used.",
    )

    def validate(self) -> None:
        if self.sync_tolerance >= self.control_period:
            raise ValueError(
                f"parameter sync_tolerance={self.sync_tolerance} must be < control_period="
                f"{self.control_period} (else one message could serve two instants)"
            )

    def topics(self) -> dict[str, str]:
        return {stream.name: getattr(self, f"{stream.name}_topic") for stream in STREAMS}

    def acting_config(self) -> ActingConfig:
        return ActingConfig(
            period_ns=round(self.control_period * NS),
            tolerance_ns=round(self.sync_tolerance * NS),
            max_age_ns=round(self.max_observation_age * NS),
            exec_latency_ns=round(self.exec_latency * NS),
            action_limit=self.action_limit,
            debug_delay_s=self.debug_inference_delay,
            offered_rows=self.offered_rows,
            continuation=ContinuationConfig(
                mode=self.continuation,
                overlap_steps=self.continuation_overlap_steps,
                schedule=self.continuation_schedule,
            ),
        )
