"""Scripted demonstrator for NutAssemblySquare: grasp the nut by its handle, turn it square to
the peg while carrying it, and lower it over the peg.

Like the Lift/Can experts it reads only the observation dict (end-effector pose, nut pose) and
commands like a teleoperator: bounded translations toward a target (proportional, optional
Gaussian noise), the gripper exactly open or closed, and, since the nut lies at any yaw, a
rotation about the vertical that turns the hand to a target heading while keeping it level.

Each phase steers by what it sees in every observation rather than by a plan fixed at the start:
once the nut is in the hand, the targets are where the nut must go, so a nut that settles or
slips in the fingers is still put on the peg.

Mode "multimodal" carries the nut over the left (+y) or the right (-y) of the straight line to
the peg, picked per episode by the expert's generator (`mode_label` "left" / "right").
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dp_ros.acting.action_convention import matrix_to_rotvec, quat_to_matrix
from dp_ros.keys import EEF_POS, EEF_QUAT, OBJECT_STATE
from dp_ros.sim.expert_commands import (
    CLOSE,
    OPEN,
    ROTATION_SCALE,
    check_expert_options,
    translation_command,
)

# NutAssemblySquare's object state (robosuite 1.5.2, NutAssembly._create_nut_sensors): nut-to-eef
# position (0:3) and quaternion (3:7), then the nut's world position (7:10) and xyzw quaternion
# (10:14). Verified against the simulator in test_env.
NUT_POS_SLICE = slice(7, 10)
NUT_QUAT_SLICE = slice(10, 14)
# The grip point: the middle of the handle's free part, which runs from the ring's outer wall
# (0.044 m along the nut's x axis) to the handle's end (0.079 m; square-nut.xml). Robosuite's
# handle_site, at 0.054, leaves the fingers 1 cm from the ring: they landed on it (seed 4).
GRIP_OFFSET = 0.0615
SQUARE_PEG_XY = np.array([0.23, 0.1])  # pegs_arena.xml, body peg1 (fixed)
PEG_TOP_Z = 0.95  # peg1 is centred at z 0.85 with half-height 0.1
NUT_RESTING_Z = 0.83  # the nut's centre lying on the table (measured)

# The hand's orientation with yaw 0: pointing down, fingers closing along the world y axis
# (robot0_eef_quat is the hand body's frame; at reset it is close to this).
HAND_DOWN = np.diag([1.0, -1.0, -1.0])
# Headings the hand can turn to from reset: the wrist joint (+-2.90 rad, at 0.79 at reset) stops
# it at about -120 and +210 degrees (measured); the upper bound stays short of 180 so that a
# heading read from the hand's orientation is never ambiguous.
HAND_YAW_RANGE = (np.deg2rad(-110.0), np.deg2rad(170.0))
# The nut's yaw on the peg: the hole fits the square peg at any multiple of a quarter turn, but
# with yaw 0 the handle (and the hand on it) points away from the robot, 5 cm beyond the peg and
# out of reach with the hand level (measured: it stops 2 cm short, tilted by 9 degrees).
NUT_YAWS_ON_PEG = (np.pi / 2, np.pi, -np.pi / 2)

APPROACH_HEIGHT = 0.06  # m above the handle before descending onto it
GRASP_HEIGHT = 0.0  # m of the grip point above the handle's centre when closing
CARRY_NUT_Z = PEG_TOP_Z + 0.05  # the nut's centre while carrying: clear of the peg's top
LOWER_NUT_Z = NUT_RESTING_Z - 0.01  # aim below the table so the nut is pressed fully down
RELEASE_NUT_Z = 0.86  # on the peg and under the success height (table + 0.05 = 0.87)
ROUTE_OFFSET = 0.12  # m sideways of the straight carry line, for the multimodal routes
ROTATION_GAIN = 0.6  # fraction of the orientation error asked for in one step
MAX_TURN_STEP = 0.3  # rad: the most heading change one step asks for (17 degrees)
YAW_TOLERANCE = np.deg2rad(3.0)


def heading(rotation: np.ndarray) -> float:
    """Yaw (rad) of a frame's x axis in the horizontal plane."""
    return float(np.arctan2(rotation[1, 0], rotation[0, 0]))


def wrap(angle: float) -> float:
    """`angle` shifted by whole turns into [-pi, pi)."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def yaw_rotation(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Turns:
    """How the hand turns in one episode: to `grasp_yaw` to grip the handle (fingers across
    it), then, nut in hand, until the nut has `nut_yaw_on_peg`."""

    grasp_yaw: float
    nut_yaw_on_peg: float


def plan_turns(nut_yaw: float, hand_yaw: float) -> Turns:
    """The least total turning that grips the handle and squares the nut to the peg with its
    handle within reach, keeping the hand's heading in HAND_YAW_RANGE throughout.

    The fingers grip the handle at the nut's yaw or half a turn from it; whatever the hand turns
    after the grasp, the nut turns with it.
    """
    low, high = HAND_YAW_RANGE
    best, best_cost = None, np.inf
    for half_turns in range(-2, 3):
        grasp_yaw = nut_yaw + half_turns * np.pi
        for nut_yaw_on_peg in NUT_YAWS_ON_PEG:
            carry_turn = wrap(nut_yaw_on_peg - nut_yaw)
            in_range = low <= grasp_yaw <= high and low <= grasp_yaw + carry_turn <= high
            cost = abs(grasp_yaw - hand_yaw) + abs(carry_turn)
            if in_range and cost < best_cost:
                best, best_cost = Turns(grasp_yaw, nut_yaw_on_peg), cost
    assert best is not None, "HAND_YAW_RANGE spans more than half a turn: a grasp always fits"
    return best


@dataclass(frozen=True)
class Scene:
    """What one observation says about the hand and the nut."""

    eef: np.ndarray  # grip point (3,), m, world
    hand: np.ndarray  # hand orientation (3, 3), world
    nut: np.ndarray  # nut centre (3,), m, world
    nut_yaw: float

    @classmethod
    def from_observation(cls, observation: dict) -> "Scene":
        state = np.asarray(observation[OBJECT_STATE], dtype=np.float64)
        return cls(
            eef=np.asarray(observation[EEF_POS], dtype=np.float64),
            hand=quat_to_matrix(observation[EEF_QUAT]),
            nut=state[NUT_POS_SLICE],
            nut_yaw=heading(quat_to_matrix(state[NUT_QUAT_SLICE])),
        )

    @property
    def hand_yaw(self) -> float:
        return heading(self.hand)

    @property
    def handle(self) -> np.ndarray:
        return self.nut + GRIP_OFFSET * np.array([np.cos(self.nut_yaw), np.sin(self.nut_yaw), 0])

    def hand_yaw_for_nut_yaw(self, nut_yaw: float) -> float:
        """The hand's heading that turns the nut, held in it, to `nut_yaw` the shortest way."""
        return self.hand_yaw + wrap(nut_yaw - self.nut_yaw)

    def eef_for_nut_at(self, nut_target: np.ndarray) -> np.ndarray:
        """Where the grip point must go to bring the held nut's centre to `nut_target`."""
        return self.eef + (nut_target - self.nut)


@dataclass(frozen=True)
class Goal:
    position: np.ndarray  # where the grip point should go, m, world
    yaw: float  # the hand's target heading, rad, in HAND_YAW_RANGE
    reached: bool  # the phase is complete


@dataclass(frozen=True)
class Phase:
    """Steer toward `goal(scene)` with the gripper at `gripper` until the goal is reached or
    `max_steps` have passed; a `hold` phase (grasp, release) always lasts `max_steps`."""

    name: str
    goal: Callable[[Scene], Goal]
    gripper: float
    max_steps: int
    hold: bool = False


class SquareExpert:
    """Grasp the handle, lift, square the nut and carry it over the peg, lower, release."""

    def __init__(self, seed: int, noise: float, mode: str, max_speed: float) -> None:
        check_expert_options(mode, noise)
        self.task = "square"
        self.noise = noise
        self.mode = mode
        self.max_speed = max_speed
        self.rng = np.random.default_rng(seed)
        self.mode_label = "default"
        self._phases: list[Phase] = []
        self._index = 0
        self._steps_in_phase = 0
        self._turns = Turns(0.0, np.pi)
        self._first_nut_yaw = 0.0
        self._via = np.zeros(3)

    def reset(self, observation: dict | None = None) -> None:
        """Start an episode from its first observation (and pick a route in multimodal mode).

        Without an observation, the episode starts from the next one `act` receives.
        """
        self._phases = []
        if observation is None:
            return
        self._phases = self._plan(Scene.from_observation(observation))
        self._index = 0
        self._steps_in_phase = 0

    def act(self, observation: dict) -> np.ndarray:
        if not self._phases:
            self.reset(observation)
        scene = Scene.from_observation(observation)
        phase = self._phases[self._index]
        goal = phase.goal(scene)
        if self._phase_done(phase, goal) and self._index < len(self._phases) - 1:
            self._index += 1
            self._steps_in_phase = 0
            phase = self._phases[self._index]
            goal = phase.goal(scene)
        self._steps_in_phase += 1
        return self._command(scene, goal, phase.gripper)

    def _plan(self, scene: Scene) -> list[Phase]:
        self._turns = plan_turns(scene.nut_yaw, scene.hand_yaw)
        self._first_nut_yaw = scene.nut_yaw
        phases = [
            Phase("above_handle", self._above_handle, OPEN, max_steps=80),
            Phase("onto_handle", self._onto_handle, OPEN, max_steps=30),
            Phase("grasp", self._hold_still, CLOSE, max_steps=10, hold=True),
            Phase("lift", self._lift, CLOSE, max_steps=40),
        ]
        self.mode_label = "default"
        if self.mode == "multimodal":
            side = 1.0 if self.rng.random() < 0.5 else -1.0
            self.mode_label = "left" if side > 0 else "right"
            midway = (scene.nut[:2] + SQUARE_PEG_XY) / 2
            self._via = np.array([midway[0], midway[1] + side * ROUTE_OFFSET, CARRY_NUT_Z])
            phases.append(Phase("via", self._through_via, CLOSE, max_steps=40))
        return phases + [
            Phase("over_peg", self._over_peg, CLOSE, max_steps=80),
            Phase("lower", self._lower, CLOSE, max_steps=40),
            Phase("release", self._hold_still, OPEN, max_steps=10, hold=True),
        ]

    def _phase_done(self, phase: Phase, goal: Goal) -> bool:
        if phase.hold:
            return self._steps_in_phase >= phase.max_steps
        return goal.reached or self._steps_in_phase >= phase.max_steps

    def _command(self, scene: Scene, goal: Goal, gripper: float) -> np.ndarray:
        action = np.zeros(7, dtype=np.float32)
        action[:3] = translation_command(
            goal.position, scene.eef, self.max_speed, self.noise, self.rng
        )
        action[3:6] = rotation_command(scene.hand, goal.yaw)
        action[6] = gripper
        return action

    # ---- phases: each turns a scene into a goal ---------------------------------------------

    def _grasp_yaw(self, scene: Scene) -> float:
        # Follows the nut, should the fingers nudge it on the way down.
        return self._turns.grasp_yaw + wrap(scene.nut_yaw - self._first_nut_yaw)

    def _squared_yaw(self, scene: Scene) -> float:
        return scene.hand_yaw_for_nut_yaw(self._turns.nut_yaw_on_peg)

    def _above_handle(self, scene: Scene) -> Goal:
        yaw = self._grasp_yaw(scene)
        target = scene.handle + [0.0, 0.0, APPROACH_HEIGHT]
        aligned = abs(yaw - scene.hand_yaw) < YAW_TOLERANCE
        return Goal(target, yaw, aligned and np.linalg.norm(target - scene.eef) < 0.01)

    def _onto_handle(self, scene: Scene) -> Goal:
        target = scene.handle + [0.0, 0.0, GRASP_HEIGHT]
        return Goal(target, self._grasp_yaw(scene), np.linalg.norm(target - scene.eef) < 0.006)

    def _hold_still(self, scene: Scene) -> Goal:
        return Goal(scene.eef, scene.hand_yaw, False)

    def _lift(self, scene: Scene) -> Goal:
        target = scene.eef + [0.0, 0.0, CARRY_NUT_Z - scene.nut[2]]
        return Goal(target, self._squared_yaw(scene), scene.nut[2] > CARRY_NUT_Z - 0.02)

    def _through_via(self, scene: Scene) -> Goal:
        target = scene.eef_for_nut_at(self._via)
        reached = np.linalg.norm(self._via - scene.nut) < 0.03
        return Goal(target, self._squared_yaw(scene), reached)

    def _over_peg(self, scene: Scene) -> Goal:
        nut_target = np.array([*SQUARE_PEG_XY, CARRY_NUT_Z])
        squared = self._squared_yaw(scene)
        centred = np.linalg.norm(nut_target[:2] - scene.nut[:2]) < 0.004
        level = abs(scene.nut[2] - CARRY_NUT_Z) < 0.02
        square = abs(squared - scene.hand_yaw) < YAW_TOLERANCE
        return Goal(scene.eef_for_nut_at(nut_target), squared, centred and level and square)

    def _lower(self, scene: Scene) -> Goal:
        target = scene.eef_for_nut_at(np.array([*SQUARE_PEG_XY, LOWER_NUT_Z]))
        return Goal(target, self._squared_yaw(scene), scene.nut[2] < RELEASE_NUT_Z)


def rotation_command(hand: np.ndarray, yaw: float) -> np.ndarray:
    """Action units (3,): an axis-angle step (world frame, as OSC_POSE applies it) that turns the
    hand toward pointing straight down at heading `yaw`; a proportional controller.

    The heading step is bounded before the error is taken, so that a turn of more than half a
    turn still goes the way asked for (the short way round may cross the wrist's stop).
    """
    step = np.clip(ROTATION_GAIN * (yaw - heading(hand)), -MAX_TURN_STEP, MAX_TURN_STEP)
    target = yaw_rotation(heading(hand) + step) @ HAND_DOWN
    error = ROTATION_GAIN * matrix_to_rotvec(target @ hand.T)
    return np.clip(error / ROTATION_SCALE, -1.0, 1.0)
