"""recorder_node: records demonstrations (observations + applied actions) into an episode store.

Topics in: the camera/pose/gripper/object streams of the recorded keys (best effort, deep queue),
the applied actions (`action_topic`, dp_msgs/ActionChunk, one row per step; reliable) and the
episode outcomes (`outcome_topic`). Out: `marker_topic` (dp_msgs/EpisodeOutcome with reason
"start" / "stop" / "discard" at each boundary, so that a `ros2 bag record` next to the recorder
can be converted with the same boundaries by dp-bag-to-store).

Services: `~/start` (dp_msgs/StartEpisode), `~/stop` (dp_msgs/StopEpisode: waits until the
episode is written, and says why when it is not), `~/discard` (std_srvs/Trigger).

Episodes:
  manual      start/stop/discard by service; boundaries are the node's clock (sim time with
              use_sim_time) at the call: a step belongs to the episode when its action's stamp
              lies in [start, stop). An operator's stop saves the episode, as a success or a
              failure (its flag). An episode never spans a reset: an EpisodeOutcome while one is
              open ends it there, saved as a success when the sim reset after success, else
              discarded (a time limit or a reset under the operator).
  auto_start  every EpisodeOutcome starts an episode at the outcome's stamp, which sim_node
              gives the first observation of the next episode (after its reset).
  auto_stop   every EpisodeOutcome stops the current episode at its stamp; success comes from the
              outcome; unsuccessful episodes are discarded unless keep_failed.

Alignment, dropped-frame refusal and stamp-jump reports are dp_ros.recording (the same code the
bag converter runs). Nothing is written before an episode stops, and the store's append commits
an episode atomically, so a crash or SIGKILL mid-episode loses only that episode.

Per episode the metadata holds task, operator, source, seed (from the sim's outcomes:
EpisodeOutcome.next_seed is the seed of the episode beginning at its stamp) and a digest of its
arrays. A seed the store already holds for the task is not recorded again: with `reset_service`
the sim is reset to the first free seed, so a second run on a store continues after its seeds;
identical episodes are refused (dp_ros.recording.stored).
"""

import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_srvs.srv import Trigger

from dp_msgs.msg import ActionChunk, EpisodeOutcome
from dp_msgs.srv import ResetEnv, StartEpisode, StopEpisode
from dp_ros import conversions as conv
from dp_ros.acting.inputs import streams_for
from dp_ros.data.store import StoreError
from dp_ros.image_fit import parse_hw
from dp_ros.nodes.params import declare_and_load
from dp_ros.nodes.qos import EVENT_QOS, STEP_QOS
from dp_ros.nodes.recorder_params import RecorderNodeConfig
from dp_ros.nodes.spin import run_node
from dp_ros.recording.assembler import EpisodeSteps
from dp_ros.recording.decode import (
    decode_applied_action,
    joint_names_from,
    make_decoder,
)
from dp_ros.recording.session import (
    MARKER_DISCARD,
    MARKER_START,
    MARKER_STOP,
    FinishedEpisode,
    RecordingSession,
    SaveResult,
    open_store,
    save_finished,
)
from dp_ros.recording.stored import SeedClaims, StoredEpisodes

# Seconds a stop may wait for its episode to be written (a 5-minute episode takes seconds).
WRITE_TIMEOUT_S = 300.0
POLL_PERIOD_S = 0.1
# A stopped episode whose steps all have their observations is written after this long, even if
# the stop came well after the last action. Messages in flight on one host usually take
# milliseconds, but a loaded recorder was measured delivering the last actions over 0.3 s after
# the outcome that closed the episode; 1 s keeps them at the cost of a slower stop.
SETTLE_GRACE_S = 1.0


class RecorderNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("recorder_node", **kwargs)
        self.config: RecorderNodeConfig = declare_and_load(self, RecorderNodeConfig)
        cfg = self.config
        self.store = open_store(cfg.store)
        self.known = StoredEpisodes.of(self.store)  # seeds and digests already stored
        self.seeds = SeedClaims(self.known, self.config.unique_seeds)
        self._sim_seed = -1  # seed of the sim's current scene, from its outcomes (-1: unknown)
        self._skip_pending = False  # a reset to a free seed was asked for and not answered yet
        self.session = RecordingSession(cfg.assembly_config())
        self._lock = threading.Lock()  # the session: subscriptions vs services vs timer
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="store_writer")
        self._waiters: dict[EpisodeSteps, Future] = {}
        self._queued_writes = 0  # episodes handed to the writer, not yet in the store
        self._queued_lock = threading.Lock()
        self._closed = False
        # Deep best-effort queues: a recorder must keep every message, not only the newest;
        # best effort still matches reliable publishers.
        sensor_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=cfg.queue_depth,
            reliability=ReliabilityPolicy.BEST_EFFORT,
        )
        for stream in streams_for(cfg.keys).values():
            self._subscribe_stream(stream, sensor_qos)
        self.create_subscription(ActionChunk, cfg.action_topic, self._on_action, STEP_QOS)
        self.create_subscription(EpisodeOutcome, cfg.outcome_topic, self._on_outcome, EVENT_QOS)
        self._marker_pub = (
            self.create_publisher(EpisodeOutcome, cfg.marker_topic, EVENT_QOS)
            if cfg.marker_topic
            else None
        )
        self._serve_episode_services()
        # Wall-clock poll for stop time-outs: sim time may stand still.
        self.create_timer(POLL_PERIOD_S, self._poll, clock=Clock(clock_type=ClockType.STEADY_TIME))
        mode = "auto start/stop" if cfg.auto_start and cfg.auto_stop else "by service"
        seeds = f"; {cfg.task} seeds from {self.seeds.free_seed(cfg.task)}" if cfg.task else ""
        self.get_logger().info(
            f"recording {list(cfg.keys)} + actions from {cfg.action_topic} into {cfg.store} "
            f"({self.store.n_episodes} episodes there{seeds}); episodes {mode}"
        )

    # ---- inputs --------------------------------------------------------------------------

    def _subscribe_stream(self, stream, qos: QoSProfile) -> None:
        cfg = self.config
        topic = getattr(cfg, f"{stream.name}_topic")
        if stream.kind == "image":
            message_type = CompressedImage if cfg.compressed_images else Image
        else:
            message_type = PoseStamped if stream.kind == "pose" else JointState
        names = joint_names_from(cfg.gripper_joint_names) if stream.name == "gripper" else ()
        decoder = make_decoder(
            stream, topic, cfg.keys, cfg.compressed_images, names,
            image_hw=self._image_hw(stream), center_crop=cfg.center_crop,
        )  # fmt: skip
        self.create_subscription(
            message_type, topic, lambda msg: self._on_observation(msg, topic, decoder), qos
        )

    def _image_hw(self, stream) -> tuple[int, int] | None:
        """The (H, W) camera frames are stored at: image_size, else the store's, else None."""
        if stream.kind != "image":
            return None
        size = parse_hw(self.config.image_size)
        key = stream.keys[0]
        if size is None and key in self.store.keys and self.store.n_episodes:
            size = tuple(self.store.array(key).shape[1:3])
        return size

    def _on_observation(self, msg, topic: str, decoder) -> None:
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        try:
            values = decoder(msg)
        except ValueError as error:
            self.get_logger().warning(f"refused: {error}", throttle_duration_sec=2.0)
            return
        with self._lock:
            for key, value in values.items():
                try:
                    self.session.add_observation(key, stamp_ns, value)
                except ValueError as error:
                    self.get_logger().warning(f"{topic}: {error}", throttle_duration_sec=2.0)
            self._collect_locked()

    def _on_action(self, msg: ActionChunk) -> None:
        try:
            applied = decode_applied_action(msg, self.config.action_topic)
        except ValueError as error:
            self.get_logger().warning(f"refused: {error}", throttle_duration_sec=2.0)
            return
        with self._lock:
            try:
                self.session.add_action(applied.stamp_ns, applied.action, applied.source)
            except ValueError as error:
                self.get_logger().warning(
                    f"{self.config.action_topic}: {error}", throttle_duration_sec=2.0
                )
            self._collect_locked()

    def _on_outcome(self, msg: EpisodeOutcome) -> None:
        cfg = self.config
        stamp_ns = conv.stamp_to_ns(msg.header.stamp)
        next_seed = int(msg.next_seed)
        with self._lock:
            if next_seed >= 0:  # a new scene from here on (else the old one goes on)
                self._sim_seed = next_seed
                self._skip_pending = False
            current = self.session.current
            if current is not None and stamp_ns > current.start_ns:
                self._end_at_outcome(msg, stamp_ns)
            if cfg.auto_start and self.session.current is None:
                task = msg.task or cfg.task
                if self.seeds.taken(task, next_seed):
                    self._skip_seed(task, next_seed)
                else:
                    metadata = self._metadata(msg.task, "", "", next_seed)
                    steps = self.session.start(stamp_ns, metadata)
                    self._publish_marker(MARKER_START, stamp_ns, steps)
            self._collect_locked()

    def _end_at_outcome(self, msg: EpisodeOutcome, stamp_ns: int) -> None:
        """The sim's episode ended inside the open one: never record across it."""
        outcome = {
            "outcome": msg.reason,
            "sim_episode": int(msg.episode),
            "sim_steps": int(msg.steps),
        }
        if self.config.auto_stop:
            steps = self.session.stop(
                stamp_ns, time.monotonic(), success=bool(msg.success), **outcome
            )
            self._publish_marker(MARKER_STOP, stamp_ns, steps, bool(msg.success))
        elif msg.success and msg.next_seed >= 0:
            # The sim reset after a success: the demonstration ended there, achieved.
            steps = self.session.stop(stamp_ns, time.monotonic(), success=True, **outcome)
            self._publish_marker(MARKER_STOP, stamp_ns, steps, True)
            self.get_logger().info("the sim reset after a success: episode stopped there")
        elif msg.success:
            self.session.current.metadata["sim_success"] = True  # no reset: the operator ends
        else:
            steps = self.session.discard()
            self._unclaim(steps)
            self._publish_marker(MARKER_DISCARD, stamp_ns, steps)
            self.get_logger().warning(
                f"episode discarded: the sim's episode ended ({msg.reason}) while recording; "
                "an episode never spans a reset (teleop: run the sim with time_limit:=false, "
                "and stop before resetting)"
            )

    # ---- services ------------------------------------------------------------------------

    def _on_start(self, request: StartEpisode.Request, response: StartEpisode.Response):
        with self._lock:
            if self.session.recording:
                response.success = False
                response.message = (
                    f"already recording (episode started at {self.session.current.start_ns} ns);"
                    " stop or discard it first"
                )
                return response
            task = request.task or self.config.task
            if self.seeds.taken(task, self._sim_seed):
                response.success = False
                response.message = self._skip_seed(task, self._sim_seed) + "; start again"
                return response
            start_ns = self._now_ns()
            metadata = self._metadata(
                request.task, request.operator_name, request.source, self._sim_seed
            )
            steps = self.session.start(start_ns, metadata)
            self._publish_marker(MARKER_START, start_ns, steps)
        response.success = True
        response.episode_index = self._next_index()
        response.message = f"recording episode {response.episode_index} from {start_ns} ns"
        self.get_logger().info(response.message)
        return response

    def _on_stop(self, request: StopEpisode.Request, response: StopEpisode.Response):
        with self._lock:
            if not self.session.recording:
                response.saved = False
                response.message = "no episode is being recorded"
                return response
            end_ns = self._now_ns()
            steps = self.session.stop(
                end_ns, time.monotonic(), success=bool(request.success), ended_by="operator"
            )
            self._publish_marker(MARKER_STOP, end_ns, steps, bool(request.success))
            waiter = self._waiters[steps] = Future()
            self._collect_locked()
        try:
            result: SaveResult = waiter.result(timeout=self.config.stop_timeout + WRITE_TIMEOUT_S)
        except TimeoutError:
            result = SaveResult(False, "timed out waiting for the episode to be written")
        response.saved = result.saved
        response.message = result.message
        response.episode_index = max(result.index, 0)
        response.frames = result.frames
        return response

    def _on_discard(self, request: Trigger.Request, response: Trigger.Response):
        with self._lock:
            steps = self.session.discard()
            if steps is not None:
                self._unclaim(steps)
                self._publish_marker(MARKER_DISCARD, self._now_ns(), steps)
        response.success = steps is not None
        response.message = (
            f"discarded the episode started at {steps.start_ns} ns ({len(steps.steps)} steps)"
            if steps is not None
            else "no episode is being recorded"
        )
        self.get_logger().info(response.message)
        return response

    # ---- finishing -----------------------------------------------------------------------

    def _poll(self) -> None:
        with self._lock:
            self._collect_locked()

    def _collect_locked(self, force: bool = False) -> None:
        if not self.session.closing:
            return
        timeout = self.config.stop_timeout
        now = time.monotonic()
        for finished in self.session.collect(now, timeout, force, grace=SETTLE_GRACE_S):
            waiter = self._waiters.pop(finished.steps, None)
            with self._queued_lock:
                self._queued_writes += 1
            self._writer.submit(self._write, finished, waiter)

    def _write(self, finished: FinishedEpisode, waiter: Future | None) -> None:
        """Writer thread: append (or refuse) one finished episode, log it, answer the stop."""
        try:
            result = save_finished(
                self.store,
                finished,
                self.config.keep_failed,
                known=self.known,
                unique_seeds=self.config.unique_seeds,
                recorder="recorder_node",
            )
        except (OSError, StoreError) as error:
            result = SaveResult(False, f"writing the episode failed: {error}")
        finally:
            with self._queued_lock:
                self._queued_writes -= 1
        self._log_result(finished, result)
        if waiter is not None:
            waiter.set_result(result)

    def _log_result(self, finished: FinishedEpisode, result: SaveResult) -> None:
        """Warn on refusals and on saved episodes with dropped frames or stamp jumps."""
        report = finished.assembled.report if finished.assembled is not None else None
        unusual = report is None or bool(
            report.dropped_steps or report.action_gaps or report.trimmed_leading
        )
        if unusual and (result.saved or report is None):
            self.get_logger().warning(result.message)
        else:
            self.get_logger().info(result.message)

    # ---- helpers -------------------------------------------------------------------------

    def _metadata(self, task: str, operator: str, source: str, seed: int) -> dict:
        task = task or self.config.task
        self.seeds.claim(task, seed)
        return {
            "task": task,
            "operator": operator or self.config.operator,
            "source": source or self.config.source,
            "seed": seed if seed >= 0 else None,
            "recorder": "recorder_node",
        }

    # ---- seeds ---------------------------------------------------------------------------

    def _unclaim(self, steps: EpisodeSteps) -> None:
        """A discarded episode leaves its seed free to be recorded again."""
        metadata = steps.metadata
        self.seeds.release(metadata.get("task", ""), metadata.get("seed"))

    def _skip_seed(self, task: str, seed: int) -> str:
        """Do not record `seed` again: ask the sim for the first free seed. Says what it did."""
        free = self.seeds.free_seed(task)
        text = f"seed {seed} of {task!r} is already recorded"
        client = self._reset_client
        if client is None or not client.service_is_ready():
            service = self.config.reset_service or "a reset service (parameter reset_service)"
            text += f": not recording it; reset the sim to seed {free} ({service} is not ready)"
        elif self._skip_pending:
            text += f": waiting for the reset to seed {free}"
        else:
            self._skip_pending = True
            client.call_async(ResetEnv.Request(seed=free))
            text += f": reset the sim to seed {free}"
        self.get_logger().warning(text, throttle_duration_sec=1.0)
        return text

    def _next_index(self) -> int:
        with self._queued_lock:
            return self.store.n_episodes + self._queued_writes

    def _publish_marker(
        self, reason: str, stamp_ns: int, steps: EpisodeSteps, success: bool = False
    ) -> None:
        if self._marker_pub is None:
            return
        msg = EpisodeOutcome(task=str(steps.metadata.get("task", "")), success=success)
        msg.reason = reason
        msg.episode = self._next_index()
        msg.steps = len(steps.steps)
        msg.header.stamp = conv.ns_to_stamp(stamp_ns)
        msg.header.frame_id = str(steps.metadata.get("operator", ""))
        seed = steps.metadata.get("seed")
        msg.seed = seed if isinstance(seed, int) else -1
        self._marker_pub.publish(msg)

    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _serve_episode_services(self) -> None:
        """~/start, ~/stop, ~/discard on a companion node with its own executor thread.

        ~/stop blocks until its episode is written, while messages must keep flowing. A
        multi-threaded executor would allow that, but rclpy's busy-spins whenever a ready
        callback waits for its group (measured: the recorder at 90% of a core on a 20 Hz feed,
        starving its own callbacks and losing steps). So messages run on a single-threaded
        executor, and the services on this one; the session lock keeps them consistent.
        """
        prefix = self.get_fully_qualified_name()
        # Not global arguments: a `-r __node:=name` remap would rename this node too.
        self._service_node = rclpy.create_node(
            f"{self.get_name()}_services", context=self.context, use_global_arguments=False
        )
        for service_type, name, callback in (
            (StartEpisode, "start", self._on_start),
            (StopEpisode, "stop", self._on_stop),
            (Trigger, "discard", self._on_discard),
        ):
            self._service_node.create_service(service_type, f"{prefix}/{name}", callback)
        reset = self.config.reset_service
        self._reset_client = self._service_node.create_client(ResetEnv, reset) if reset else None
        self._service_executor = SingleThreadedExecutor(context=self.context)
        self._service_executor.add_node(self._service_node)
        self._service_thread = threading.Thread(
            target=self._spin_services, name="episode_services", daemon=True
        )
        self._service_thread.start()

    def _spin_services(self) -> None:
        try:
            self._service_executor.spin()
        except ExternalShutdownException:
            pass

    def close(self) -> None:
        """Drop the unfinished episode, write every closed one, release the store."""
        if self._closed:
            return
        self._closed = True
        # The spinning thread must have left the executor before its node goes: destroying a
        # node under a wait in progress aborts the process (std::terminate).
        self._service_executor.shutdown()
        self._service_thread.join(timeout=5)
        self._service_node.destroy_node()
        with self._lock:
            if self.session.discard() is not None:
                self.get_logger().info("shutdown: the episode being recorded was discarded")
            self._collect_locked(force=True)
        self._writer.shutdown(wait=True)
        self.store.close()


def main(args: list[str] | None = None) -> int:
    return run_node(
        "recorder_node", RecorderNode, args, config_type=RecorderNodeConfig, summary=__doc__
    )


if __name__ == "__main__":
    sys.exit(main())
