"""policy_node: a lifecycle node that turns stamped robot observations into ActionChunks.

  configure  load the checkpoint on the device, check it against the configured inputs,
             warm up, subscribe to the streams the checkpoint needs
  activate   start the inference thread: act, publish, start the next inference while the
             current chunk still executes
  deactivate stop acting (subscriptions keep their histories warm)
  cleanup    drop the policy and free its memory (GPU included)

Topics: the camera/pose/gripper/object inputs (sensor-data QoS), `action_chunk` (reliable),
`~/status` (dp_msgs/PolicyStatus), and with `episode_topic` the sim's EpisodeOutcomes (each starts
a new episode at its stamp). Services: `~/reset` (std_srvs/Trigger), `~/enable`
(std_srvs/SetBool). All logic that decides what to publish lives in dp_ros.acting.
"""

import gc
import sys
import threading

from geometry_msgs.msg import PoseStamped
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_srvs.srv import SetBool, Trigger

from dp_msgs.msg import ActionChunk, EpisodeOutcome, PolicyStatus
from dp_ros import conversions as conv
from dp_ros.acting.acting_loop import ActingCore, ActOutcome
from dp_ros.acting.input_guard import InputGuard
from dp_ros.acting.inputs import STREAM_BY_NAME, plan_inputs
from dp_ros.acting.obs_sync import CLOCK_JUMPED, check_stamp
from dp_ros.keys import EEF_POS, EEF_QUAT
from dp_ros.nodes.params import declare_and_load
from dp_ros.nodes.policy_input_check import check_joint_state_inputs
from dp_ros.nodes.policy_params import NS, PolicyNodeConfig
from dp_ros.nodes.qos import ACTION_QOS, EVENT_QOS, SENSOR_QOS, STATUS_QOS
from dp_ros.nodes.spin import run_node

# On the way out the inference thread gets this long to finish its chunk (launch escalates to
# SIGTERM after 5 s; the target is a stop within 2 s). One still running after it cannot publish:
# close() shut the gate first.
CLOSE_JOIN_S = 1.5


class PolicyNode(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("policy_node", **kwargs)
        self.config: PolicyNodeConfig = declare_and_load(self, PolicyNodeConfig)
        self.core: ActingCore | None = None
        self.plan: dict[str, str] = {}
        self._input_subscriptions = []
        # stream (or "episode") -> (time ns, error, messages refused so far)
        self._input_errors: dict[str, tuple[int, str, int]] = {}
        self._clock_jumps = 0  # the acting loop's schedule restarts when this changes
        self._enabled = self.config.start_enabled
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._publish_gate = threading.Lock()  # held while publishing; close() shuts it
        self._closed = False
        self._sequence = 0
        self._chunks_published = 0
        self._last_latency = 0.0
        self._status = (PolicyStatus.STATE_UNCONFIGURED, "not configured", "")
        self._status_publisher = self.create_publisher(PolicyStatus, "~/status", STATUS_QOS)
        self._chunk_publisher = self.create_lifecycle_publisher(
            ActionChunk, self.config.action_topic, ACTION_QOS
        )
        self.create_timer(1.0 / self.config.status_rate, self._publish_status)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetBool, "~/enable", self._on_enable)

    # ---- lifecycle -----------------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from dp_ros.policy.runtime import PolicyRunner  # torch import only when needed

        try:
            runner = PolicyRunner.from_checkpoint(
                self._checkpoint_path(),
                device=self.config.device,
                num_inference_steps=self.config.num_inference_steps or None,
                seed=self.config.seed,
                dtype=self.config.dtype,
                sampler=self.config.sampler or None,
                half_weights=self.config.half_weights and self.config.device.startswith("cpu"),
            )
            self.plan = plan_inputs(runner.obs_keys, self.config.topics())
            check_joint_state_inputs(
                self,
                self.plan,
                runner.expected_obs_shapes(),
                self._checkpoint_path(),
                self.config.input_check_timeout,
                self._gripper_joint_names(),
            )
            runner.warmup()
            self.core = ActingCore(runner, self.config.acting_config())
            self.core.sync.future_tolerance_ns = self._future_tolerance_ns()
            self.core.sync.min_interval_ns = round(self.config.sync_tolerance * NS / 4)
            self.core.input_guard = InputGuard.from_stats(
                runner.policy.normalizer.stats, runner.obs_keys, self.config.input_guard
            )
            self._expected_shapes = runner.expected_obs_shapes()
            self._subscribe()
        except Exception as error:  # whatever the cause, the log and the status name it
            self._release()
            text = str(error) if isinstance(error, ValueError) else repr(error)
            self._set_status(PolicyStatus.STATE_UNCONFIGURED, text, self.config.checkpoint)
            self.get_logger().error(f"configure failed: {text}")
            return TransitionCallbackReturn.FAILURE
        weights = "fp16 weights, fp32 maths" if runner.half_weights else str(runner.dtype)
        self.get_logger().info(
            f"loaded {self.config.checkpoint} on {self.config.device} ({weights}): "
            f"inputs {self.plan}"
        )
        self._set_status(PolicyStatus.STATE_INACTIVE, "configured, not active", "")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self._stop.clear()
        self._worker = threading.Thread(target=self._run_worker, name="inference", daemon=True)
        self._worker.start()
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._set_status(PolicyStatus.STATE_INACTIVE, "deactivated", "")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        self._set_status(PolicyStatus.STATE_UNCONFIGURED, "cleaned up", "")
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._release()
        return super().on_shutdown(state)

    def _checkpoint_path(self) -> str:
        if not self.config.checkpoint:
            raise ValueError("parameter checkpoint is empty: set it to a checkpoint directory")
        return self.config.checkpoint

    def _release(self) -> None:
        """Drop subscriptions and the policy, and give its memory back (GPU included)."""
        for subscription in self._input_subscriptions:
            self.destroy_subscription(subscription)
        self._input_subscriptions = []
        device = self.config.device
        self.core = None
        gc.collect()
        if device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # ---- inputs --------------------------------------------------------------------------

    def _subscribe(self) -> None:
        for stream_name, topic in self.plan.items():
            kind = STREAM_BY_NAME[stream_name].kind
            if kind == "image":
                message_type = CompressedImage if self.config.compressed_images else Image
            else:
                message_type = PoseStamped if kind == "pose" else JointState
            callback = self._handler(stream_name, topic, message_type)
            # raw: the stamp is read from the serialised bytes, and only messages the
            # synchroniser keeps are deserialised (64 us each for a PoseStamped here).
            self._input_subscriptions.append(
                self.create_subscription(message_type, topic, callback, SENSOR_QOS, raw=True)
            )
        if self.config.episode_topic:
            self._input_subscriptions.append(
                self.create_subscription(
                    EpisodeOutcome, self.config.episode_topic, self._on_episode_outcome, EVENT_QOS
                )
            )

    def _on_episode_outcome(self, msg: EpisodeOutcome) -> None:
        """The sim began a new episode at the outcome's stamp: act on its observations only.

        An outcome stamped beyond the future tolerance is refused: as an episode start it would
        make every observation until then count as the old episode's."""
        core = self.core
        if core is None:
            return
        try:
            stamp_ns = conv.stamp_to_ns(msg.header.stamp)
            topic = self.config.episode_topic
            check_stamp(topic, stamp_ns, self._now_ns(), self._future_tolerance_ns())
            core.reset(stamp_ns)
        except Exception as error:  # untrusted input: never fatal
            self._refuse("episode", self.config.episode_topic, error)

    def _handler(self, stream_name: str, topic: str, message_type):
        """The callback of one stream: serialised message -> {key: array}, then record it."""
        stream = STREAM_BY_NAME[stream_name]
        key = stream.keys[0]
        if stream.kind == "image":
            _, height, width, _ = self._expected_shapes[key]
            decode = conv.compressed_image_to_rgb if self.config.compressed_images else None
            decode = decode or conv.image_to_rgb
            cfg = self.config

            def convert(msg):
                if cfg.resize_images:  # any native size -> the checkpoint's (dp_ros.image_fit)
                    rgb = conv.camera_to_rgb(
                        msg, topic, cfg.compressed_images, (height, width), cfg.center_crop
                    )
                    return {key: rgb}
                return {key: decode(msg, topic, (height, width))}

        elif stream.kind == "pose":

            def convert(msg):
                position, quaternion = conv.pose_to_arrays(msg, topic)
                return {EEF_POS: position, EEF_QUAT: quaternion}

        else:
            size = self._expected_shapes[key][1]
            names = self._gripper_joint_names() if stream_name == "gripper" else []

            def convert(msg):
                return {key: conv.joint_state_to_array(msg, topic, size, names)}

        def convert_raw(raw: bytes):
            return convert(deserialize_message(raw, message_type))

        return lambda raw: self._accept(stream_name, raw, convert_raw)

    def _gripper_joint_names(self) -> list[str]:
        return [n.strip() for n in self.config.gripper_joint_names.split(",") if n.strip()]

    def _accept(self, stream: str, raw: bytes, convert) -> None:
        """Convert and record one serialised message, its stamp judged against this node's clock.

        Any failure is the message's fault (it comes off the wire): logged, counted, named in
        the status, and skipped; an exception escaping a callback would end the process."""
        core = self.core
        if core is None:
            return
        try:
            stamp_ns = conv.serialized_stamp_ns(raw, self.plan[stream])
            # A high-rate stream: most messages are dropped here, before deserialisation.
            if not core.sync.would_keep(STREAM_BY_NAME[stream].keys[0], stamp_ns):
                return
            now_ns = self._now_ns()
            for key, value in convert(raw).items():
                notice = core.add(key, stamp_ns, value, now_ns)
                if notice:
                    self._on_clock_jump(notice)
        except Exception as error:  # untrusted input: never fatal (see the docstring)
            self._refuse(stream, self.plan.get(stream, stream), error)

    def _refuse(self, stream: str, topic: str, error: Exception) -> None:
        """Remember and log why a message of `stream` was refused (one line, throttled)."""
        text = str(error) if isinstance(error, ValueError) else f"{type(error).__name__}: {error}"
        if not text.startswith(topic):
            text = f"{topic}: {text}"
        count = self._input_errors.get(stream, (0, "", 0))[2] + 1
        self._input_errors[stream] = (self._now_ns(), text, count)
        self.get_logger().warning(
            f"refused message #{count} on {topic}: {text}", throttle_duration_sec=2.0
        )

    def _on_clock_jump(self, notice: str) -> None:
        self._clock_jumps += 1
        self.get_logger().warning(notice)

    def _future_tolerance_ns(self) -> int:
        return round(self.config.future_stamp_tolerance * NS)

    # ---- acting --------------------------------------------------------------------------

    def _act_loop(self) -> None:
        clock_jumps = self._clock_jumps
        while not self._stop.is_set():
            core = self.core
            if core is None:
                return
            if clock_jumps != self._clock_jumps:  # a schedule from before a jump: start afresh
                core.restart_schedule()
                clock_jumps = self._clock_jumps
            if not self._enabled:
                self._set_status(PolicyStatus.STATE_HOLDING, "disabled via ~/enable", "")
                self._stop.wait(0.05)
                continue
            if not core.due(self._now_ns()):
                self._stop.wait(0.002)
                continue
            outcome = core.act(self._now_ns)
            if outcome.inference_s:
                self._last_latency = outcome.inference_s
            if outcome.chunk is None:
                self._report_not_acting(outcome)
                self._stop.wait(0.005)
                continue
            self._publish(outcome)
            core.schedule_next(outcome, self.config.replan_lead_steps)

    def _run_worker(self) -> None:
        try:
            self._act_loop()
        except Exception:
            if not self._stop.is_set():
                raise
            # Stopping while an inference ran: the node (or its context) may already be gone.

    def _publish(self, outcome: ActOutcome) -> None:
        msg = conv.timed_chunk_to_msg(
            outcome.chunk,
            outcome.observation_stamp_ns,
            self._sequence,
            self.config.frame_id,
            source=ActionChunk.SOURCE_POLICY,
        )
        with self._publish_gate:  # no chunk once close() began (the context goes next)
            if self._closed:
                return
            self._chunk_publisher.publish(msg)
        self._sequence += 1
        self._chunks_published += 1
        self._set_status(PolicyStatus.STATE_ACTING, "", "")

    def _report_not_acting(self, outcome: ActOutcome) -> None:
        """Status names the input: the topic of the key concerned, with its last bad message."""
        reason, input_name = outcome.reason, outcome.input
        if reason.startswith(CLOCK_JUMPED):  # seen by the synchroniser at assembly
            self._on_clock_jump(reason)
        for stream_name, topic in self.plan.items():
            if input_name in STREAM_BY_NAME[stream_name].keys:
                input_name = topic
                error = self._input_errors.get(stream_name)
                if error and 0 <= self._now_ns() - error[0] < 2 * NS:
                    reason = f"bad input ({error[2]} refused): {error[1]}"
        self._set_status(PolicyStatus.STATE_HOLDING, reason, input_name)

    # ---- services and status -------------------------------------------------------------

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response):
        if self.core is not None:
            self.core.reset()
        self._sequence = 0
        self._input_errors.clear()
        response.success = True
        response.message = "observation history cleared, sampler re-seeded"
        return response

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response):
        self._enabled = bool(request.data)
        response.success = True
        response.message = f"acting {'enabled' if self._enabled else 'disabled'}"
        return response

    def _set_status(self, state: int, reason: str, input_name: str) -> None:
        status = (state, reason, input_name)
        if status != self._status and not self._closed:
            self._status = status
            if reason:
                self.get_logger().info(f"not acting: {reason} [{input_name}]")
            self._publish_status()

    def _publish_status(self) -> None:
        state, reason, input_name = self._status
        msg = PolicyStatus(state=state, reason=reason, input=input_name)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.acting = state == PolicyStatus.STATE_ACTING
        msg.last_inference_latency = float(self._last_latency)
        msg.chunks_published = self._chunks_published
        with self._publish_gate:
            if not self._closed:
                self._status_publisher.publish(msg)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def close(self) -> None:
        """Called by run_node before the context shuts down: stop publishing, then acting."""
        with self._publish_gate:
            self._closed = True
        self._stop_worker(timeout=CLOSE_JOIN_S)

    def _stop_worker(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            self._worker = None


def main(args: list[str] | None = None) -> int:
    # Single-threaded: callbacks never block (inference has its own thread), and rclpy's
    # multi-threaded executor busy-spins (see recorder_node).
    return run_node("policy_node", PolicyNode, args, config_type=PolicyNodeConfig, summary=__doc__)


if __name__ == "__main__":
    sys.exit(main())
