"""Drive a managed node through its lifecycle over its standard services.

What `ros2 lifecycle set` and launch_ros's lifecycle events do, for the dp-ros runner and tests:
`<node>/change_state` and `<node>/get_state` (lifecycle_msgs).
"""

import threading
import time

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState

TRANSITIONS = {
    "configure": Transition.TRANSITION_CONFIGURE,
    "activate": Transition.TRANSITION_ACTIVATE,
    "deactivate": Transition.TRANSITION_DEACTIVATE,
    "cleanup": Transition.TRANSITION_CLEANUP,
    "shutdown": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
}
# The primary state each transition starts from and the one it ends in when it succeeds.
TRANSITION_STATES = {
    "configure": ("unconfigured", "inactive"),
    "activate": ("inactive", "active"),
    "deactivate": ("active", "inactive"),
    "cleanup": ("inactive", "unconfigured"),
    "shutdown": ("unconfigured", "finalized"),
}
# An unanswered transition request is checked against the node's state this often.
UNANSWERED_CHECK_S = 5.0
STATE_LABELS = {
    State.PRIMARY_STATE_UNCONFIGURED: "unconfigured",
    State.PRIMARY_STATE_INACTIVE: "inactive",
    State.PRIMARY_STATE_ACTIVE: "active",
    State.PRIMARY_STATE_FINALIZED: "finalized",
}


class LifecycleClient:
    """Transitions of one managed node, called from `node` spun by `executor`."""

    def __init__(self, node, executor, target: str, cancel: threading.Event | None = None) -> None:
        """`cancel`, when set, abandons a call that waits for its answer (a graph stopping)."""
        self.node = node
        self.cancel = cancel or threading.Event()
        self.executor = executor
        self.target = target.rstrip("/")
        self._change = node.create_client(ChangeState, f"{self.target}/change_state")
        self._get = node.create_client(GetState, f"{self.target}/get_state")

    def wait_for_services(self, timeout: float) -> bool:
        return self._change.wait_for_service(timeout) and self._get.wait_for_service(timeout)

    def _call(self, client, request, timeout: float, attempts: int = 1):
        """The response; with `attempts` > 1 the request is sent again when no answer comes in
        timeout / attempts (for requests that change nothing: a request sent just as a service
        is discovered can be lost before the reply path is matched)."""
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"{client.srv_name} not available after {timeout}s")
        for _ in range(attempts):
            future = client.call_async(request)
            deadline = time.monotonic() + timeout / attempts
            while not future.done() and not self.cancel.is_set():
                slice_s = min(0.5, deadline - time.monotonic())
                if slice_s <= 0:
                    break
                self.executor.spin_until_future_complete(future, timeout_sec=slice_s)
            if future.done():
                return future.result()
            client.remove_pending_request(future)
            if self.cancel.is_set():
                raise TimeoutError(f"{client.srv_name}: abandoned, the graph is stopping")
        raise TimeoutError(f"{client.srv_name} did not answer in {timeout}s")

    def transition(self, name: str, timeout: float = 120.0) -> bool:
        """Request a transition by name; True if the node accepted and completed it.

        A request sent just after the service was discovered can be lost (the server's reader
        not yet matched), and so can a reply; a plain call then waits out its whole timeout
        (seen: configure unanswered for 120 s). So an unanswered request is checked every
        UNANSWERED_CHECK_S against the node's state: already in the target state means the
        reply was lost (True); still in the start state means the request was lost, or it
        failed and its reply was lost, and it is sent again (a failing transition fails again
        and answers). A node too busy to answer get_state is mid-transition: keep waiting.
        """
        if name not in TRANSITIONS:
            raise ValueError(f"unknown transition {name!r}; expected one of {list(TRANSITIONS)}")
        request = ChangeState.Request()
        request.transition.id = TRANSITIONS[name]
        client = self._change
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"{client.srv_name} not available after {timeout}s")
        deadline = time.monotonic() + timeout
        futures = [client.call_async(request)]
        next_check = time.monotonic() + UNANSWERED_CHECK_S
        try:
            while True:
                answered = next((f for f in futures if f.done()), None)
                if answered is not None:
                    return bool(answered.result().success)
                if self.cancel.is_set():
                    raise TimeoutError(f"{client.srv_name}: abandoned, the graph is stopping")
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError(f"{client.srv_name} did not answer in {timeout}s")
                if now >= next_check:
                    state = self._state_if_answered()
                    start, goal = TRANSITION_STATES[name]
                    if state == goal:
                        return True
                    if state == start:
                        futures.append(client.call_async(request))
                    next_check = time.monotonic() + UNANSWERED_CHECK_S
                slice_s = min(0.5, deadline - time.monotonic())
                self.executor.spin_until_future_complete(futures[-1], timeout_sec=slice_s)
        finally:
            for future in futures:
                if not future.done():
                    client.remove_pending_request(future)

    def _state_if_answered(self) -> str | None:
        try:
            return self.state(timeout=UNANSWERED_CHECK_S / 2)
        except TimeoutError:
            return None

    def state(self, timeout: float = 30.0) -> str:
        """The node's primary state label, e.g. "inactive" (asked up to 3 times)."""
        result = self._call(self._get, GetState.Request(), timeout, attempts=3)
        return STATE_LABELS.get(result.current_state.id, result.current_state.label)
