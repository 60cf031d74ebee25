"""An rclpy node of a test's own that watches a graph running in other processes.

Tests and benchmarks subclass it for their subscriptions; it owns the node, a single-threaded
executor and (unless given one) an rclpy context, and spins only when asked.
"""

import time
from collections.abc import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor


class GraphObserver:
    def __init__(self, name: str, context: rclpy.Context | None = None) -> None:
        self._owns_context = context is None
        self.context = rclpy.Context() if context is None else context
        if self._owns_context:
            rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Spin until `condition()` holds or `timeout` seconds pass; the condition's last value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not condition():
            self.executor.spin_once(timeout_sec=0.02)
        return condition()

    def spin_for(self, seconds: float) -> None:
        self.spin_until(lambda: False, seconds)

    def call(self, client, request, timeout: float = 30.0):
        """A service call from this node: the response (None if it did not come in time)."""
        assert client.wait_for_service(timeout_sec=timeout), client.srv_name
        future = client.call_async(request)
        self.executor.spin_until_future_complete(future, timeout_sec=timeout)
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        if self._owns_context:
            rclpy.shutdown(context=self.context)
