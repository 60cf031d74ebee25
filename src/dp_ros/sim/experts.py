"""Scripted demonstrators for Lift, PickPlaceCan and NutAssemblySquare: state in, teleoperator-
like 7-D actions out (`make_expert`). Lift and Can are waypoint experts, defined here; Square,
which must also turn the gripper, has a module of its own (dp_ros.sim.square_expert).

An expert reads only the observation dict (end-effector pose, gripper, object state), exactly what
the simulator publishes, and drives the end effector through a sequence of waypoints with a
proportional controller on position (orientation held, as a teleoperator holding the gripper
level would). `noise` adds Gaussian noise to the translation commands; mode "multimodal" picks one
of two routes per episode (Lift: approach from the left or the right; Can: carry over the near or
the far side of the bins), so datasets have the two-mode structure that a single-Gaussian policy
cannot fit and a diffusion policy can.
"""

from dataclasses import dataclass

import numpy as np

from dp_ros.keys import EEF_POS, OBJECT_STATE
from dp_ros.sim.expert_commands import CLOSE, OPEN, check_expert_options, translation_command
from dp_ros.sim.square_expert import SquareExpert

# Where the waypoint tasks' object position sits in robosuite's object-state vector (verified
# in tests); Square's layout is in dp_ros.sim.square_expert.
OBJECT_POS_SLICE = {"lift": slice(0, 3), "can": slice(7, 10)}
# PickPlaceCan's target: the can's quadrant of bin 2 (env.target_bin_placements[3]; fixed).
CAN_TARGET = np.array([0.1975, 0.4025, 0.8])
EXPERT_TASKS = ("lift", "can", "square")


@dataclass
class Waypoint:
    """Move to `target` with the gripper at `gripper`; done within `tolerance` m, or after
    `max_steps` steps, or after exactly `hold_steps` steps when set (for grasp/release)."""

    target: np.ndarray
    gripper: float
    tolerance: float = 0.01
    max_steps: int = 60
    hold_steps: int = 0


class Expert:
    """Follows a list of waypoints planned from the first observation of the episode."""

    def __init__(self, task: str, seed: int, noise: float, mode: str, max_speed: float) -> None:
        if task not in OBJECT_POS_SLICE:
            raise ValueError(
                f"no waypoint expert for task {task!r}; have {sorted(OBJECT_POS_SLICE)}"
            )
        check_expert_options(mode, noise)
        self.task = task
        self.noise = noise
        self.mode = mode
        self.max_speed = max_speed
        self.rng = np.random.default_rng(seed)
        self.mode_label = "default"
        self._plan: list[Waypoint] = []
        self._index = 0
        self._steps_in_waypoint = 0

    def object_position(self, observation: dict) -> np.ndarray:
        return np.asarray(observation[OBJECT_STATE][OBJECT_POS_SLICE[self.task]], dtype=np.float64)

    def reset(self, observation: dict | None = None) -> None:
        """Plan the episode from its first observation (and pick a route in multimodal mode).

        Without an observation, the plan is made from the next one `act` receives.
        """
        if observation is None:
            self._plan = []
            return
        side = 1.0
        if self.mode == "multimodal":
            side = 1.0 if self.rng.random() < 0.5 else -1.0
        planner = plan_lift if self.task == "lift" else plan_can
        self._plan, self.mode_label = planner(self.object_position(observation), side, self.mode)
        self._index = 0
        self._steps_in_waypoint = 0

    def act(self, observation: dict) -> np.ndarray:
        if not self._plan:
            self.reset(observation)
        eef = np.asarray(observation[EEF_POS], dtype=np.float64)
        waypoint = self._plan[self._index]
        if self._waypoint_done(waypoint, eef) and self._index < len(self._plan) - 1:
            self._index += 1
            self._steps_in_waypoint = 0
            waypoint = self._plan[self._index]
        self._steps_in_waypoint += 1
        return self._command(waypoint, eef)

    def _waypoint_done(self, waypoint: Waypoint, eef: np.ndarray) -> bool:
        if waypoint.hold_steps:
            return self._steps_in_waypoint >= waypoint.hold_steps
        close = np.linalg.norm(waypoint.target - eef) < waypoint.tolerance
        return close or self._steps_in_waypoint >= waypoint.max_steps

    def _command(self, waypoint: Waypoint, eef: np.ndarray) -> np.ndarray:
        action = np.zeros(7, dtype=np.float32)
        action[:3] = translation_command(
            waypoint.target, eef, self.max_speed, self.noise, self.rng
        )
        action[6] = waypoint.gripper
        return action


def plan_lift(cube: np.ndarray, side: float, mode: str) -> tuple[list[Waypoint], str]:
    """Above the cube, down, grasp, lift. Multimodal: first swing out to one side of the cube."""
    plan = []
    label = "default"
    if mode == "multimodal":
        label = "left" if side > 0 else "right"
        plan.append(Waypoint(cube + [0.0, 0.12 * side, 0.10], OPEN, tolerance=0.02))
    plan += [
        Waypoint(cube + [0.0, 0.0, 0.06], OPEN, tolerance=0.01),
        Waypoint(cube + [0.0, 0.0, -0.005], OPEN, tolerance=0.006, max_steps=30),
        Waypoint(cube + [0.0, 0.0, -0.005], CLOSE, hold_steps=8),
        Waypoint(cube + [0.0, 0.0, 0.20], CLOSE, tolerance=0.01, max_steps=200),
    ]
    return plan, label


def plan_can(can: np.ndarray, side: float, mode: str) -> tuple[list[Waypoint], str]:
    """Above the can, down, grasp, lift clear of the bins, carry, lower, release.

    Multimodal: carry via the near (-x) or far (+x) side of the workspace before the target.
    """
    carry_height = 1.08
    plan = [
        Waypoint(can + [0.0, 0.0, 0.08], OPEN, tolerance=0.01),
        Waypoint(can + [0.0, 0.0, 0.0], OPEN, tolerance=0.006, max_steps=30),
        Waypoint(can + [0.0, 0.0, 0.0], CLOSE, hold_steps=10),
        Waypoint(np.array([can[0], can[1], carry_height]), CLOSE, tolerance=0.02),
    ]
    label = "default"
    if mode == "multimodal":
        label = "far" if side > 0 else "near"
        via = np.array([CAN_TARGET[0] + 0.12 * side, 0.5 * (can[1] + CAN_TARGET[1]), carry_height])
        plan.append(Waypoint(via, CLOSE, tolerance=0.03))
    plan += [
        Waypoint(np.array([CAN_TARGET[0], CAN_TARGET[1], carry_height]), CLOSE, tolerance=0.015),
        Waypoint(np.array([CAN_TARGET[0], CAN_TARGET[1], 0.95]), CLOSE, tolerance=0.015),
        Waypoint(np.array([CAN_TARGET[0], CAN_TARGET[1], 0.95]), OPEN, hold_steps=15),
    ]
    return plan, label


def make_expert(
    task: str, seed: int = 0, noise: float = 0.0, mode: str = "default", max_speed: float = 0.8
) -> Expert | SquareExpert:
    """A scripted demonstrator for `task` ("lift", "can" or "square"); `seed` drives noise and
    routes. Each has `reset(observation)`, `act(observation) -> (7,) float32`, `mode_label`."""
    if task not in EXPERT_TASKS:
        raise ValueError(f"no scripted expert for task {task!r}; have {list(EXPERT_TASKS)}")
    if task == "square":
        return SquareExpert(seed, noise, mode, max_speed)
    return Expert(task, seed, noise, mode, max_speed)
