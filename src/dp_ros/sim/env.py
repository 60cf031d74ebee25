"""ROS-free robosuite wrapper: Lift, PickPlaceCan, NutAssemblySquare, Panda (robosuite 1.5.2).

Observation dict (keys from dp_ros.keys), returned by `reset()` and `step()`:
    agentview_image            uint8 (H, W, 3) RGB, upright        (only with cameras=True)
    robot0_eye_in_hand_image   uint8 (H, W, 3) RGB, upright        (only with cameras=True)
    robot0_eef_pos             float32 (3,)   m, world frame
    robot0_eef_quat            float32 (4,)   xyzw
    robot0_gripper_qpos        float32 (2,)   finger joint positions
    object                     float32 (Do,)  task object state (Lift 10, Can 14, Square 14)

Action: 7-D OSC_POSE delta in [-1, 1]: dx dy dz (x 0.05 m), axis-angle drx dry drz (x 0.5 rad),
gripper (+1 closes). Control at 20 Hz. `reset(seed)` is reproducible: robosuite draws object
placement and the robot's initial-pose noise from one generator, which is reseeded in place.
"""

import importlib.util
import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def _name_bundled_glfw() -> None:
    """robosuite imports mujoco.viewer (which we never open), and with it pyglfw, which probes
    each candidate GLFW library in a `python -c` child process. A Ctrl-C during that probe ends
    the node while the child still writes to the node's output: a BrokenPipeError traceback from
    the child (seen in test_clean_stop under load). Naming pyglfw's bundled library, as its
    PYGLFW_LIBRARY variable allows, skips the probe; a value set by the user wins."""
    spec = importlib.util.find_spec("glfw")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return
    bundled = os.path.join(spec.submodule_search_locations[0], "x11", "libglfw.so")
    if os.path.isfile(bundled):
        os.environ.setdefault("PYGLFW_LIBRARY", bundled)


_name_bundled_glfw()

import numpy as np  # noqa: E402

from dp_ros.keys import (  # noqa: E402
    AGENTVIEW_IMAGE,
    EEF_POS,
    EEF_QUAT,
    GRIPPER_QPOS,
    OBJECT_STATE,
    WRIST_IMAGE,
)

# task name -> (robosuite environment, extra make() arguments, default episode step limit)
TASKS = {
    "lift": ("Lift", {}, 300),
    "can": ("PickPlaceCan", {}, 500),  # these two already fix their single object
    "square": ("NutAssemblySquare", {}, 500),
}
CAMERAS = {AGENTVIEW_IMAGE: "agentview", WRIST_IMAGE: "robot0_eye_in_hand"}
CONTROL_FREQ = 20


class SimEnv:
    """One robosuite task with the shared observation keys; see the module docstring."""

    def __init__(
        self,
        task: str,
        cameras: bool = True,
        image_size: int = 84,
        fast_render: bool = True,
        max_episode_steps: int | None = None,
        seed: int = 0,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task={task!r}: must be one of {sorted(TASKS)}")
        if not 16 <= image_size <= 1024:
            raise ValueError(f"image_size={image_size}: must be in [16, 1024]")
        import robosuite
        import robosuite.macros as macros
        from robosuite.controllers import load_composite_controller_config

        # Upright images (row 0 at the top), as cameras on a robot deliver them.
        macros.IMAGE_CONVENTION = "opencv"
        env_name, extra, default_steps = TASKS[task]
        self.task = task
        self.cameras = cameras
        self.max_episode_steps = max_episode_steps or default_steps
        self._env = robosuite.make(
            env_name,
            robots="Panda",
            controller_configs=load_composite_controller_config(robot="Panda"),
            has_renderer=False,
            has_offscreen_renderer=cameras,
            use_camera_obs=cameras,
            use_object_obs=True,
            camera_names=list(CAMERAS.values()),
            camera_heights=image_size,
            camera_widths=image_size,
            control_freq=CONTROL_FREQ,
            hard_reset=False,  # hard resets cost 1-3 s and leak memory
            ignore_done=True,  # this wrapper owns the episode limit
            reward_shaping=False,
            seed=seed,
            **extra,
        )
        self._env.reset()
        if cameras and fast_render:
            self._disable_costly_rendering()
        self.steps = 0

    def _disable_costly_rendering(self) -> None:
        """MSAA and reflections off: about 4x more steps/s on a CPU renderer (measured)."""
        import mujoco

        sim = self._env.sim
        sim.model.vis.quality.offsamples = 0
        context = sim._render_context_offscreen
        context.gl_ctx.make_current()
        context.con.free()
        context._set_mujoco_context_and_buffers()
        context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Start an episode; with a seed, object placement and robot noise are reproducible."""
        if seed is not None:
            # Samplers and robots hold this very generator: reseed it in place.
            self._env.rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
        self._env.reset()
        self.steps = 0
        # Object-relative observations are stale (zeros) right after reset for Can/Square.
        return self._observation(self._env._get_observations(force_update=True))

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, dict]:
        """Apply one 7-D action; done when the task succeeds or the step limit is reached."""
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        if action.shape != (7,):
            raise ValueError(f"action has shape {action.shape}; expected (7,)")
        raw, reward, _, _ = self._env.step(action)
        self.steps += 1
        success = bool(self._env._check_success())
        done = success or self.steps >= self.max_episode_steps
        return self._observation(raw), float(reward), done, {"success": success}

    def _observation(self, raw: dict) -> dict[str, np.ndarray]:
        observation = {
            EEF_POS: raw["robot0_eef_pos"].astype(np.float32),
            EEF_QUAT: raw["robot0_eef_quat"].astype(np.float32),
            GRIPPER_QPOS: raw["robot0_gripper_qpos"].astype(np.float32),
            OBJECT_STATE: raw["object-state"].astype(np.float32),
        }
        if self.cameras:
            for key, camera in CAMERAS.items():
                observation[key] = np.ascontiguousarray(raw[f"{camera}_image"], dtype=np.uint8)
        return observation

    @property
    def raw_env(self):
        """The robosuite environment (for experts that read simulator state)."""
        return self._env

    def close(self) -> None:
        self._env.close()
