"""Serve the dp_msgs services (and the std_srvs ones the nodes use) with answers a test can check.

Each answer echoes its request, so the test proves the request crossed the process boundary intact.
"""

import rclpy
from std_srvs.srv import SetBool, Trigger

from dp_msgs.srv import ResetEnv, StartEpisode, StopEpisode


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("episode_services")
    state = {"episode": 41}

    def start(request, response):
        response.success = True
        response.message = f"recording {request.task} by {request.operator_name}"
        response.episode_index = state["episode"]
        return response

    def stop(request, response):
        response.saved = True
        response.message = f"outcome success={request.success}"
        response.episode_index = state["episode"]
        response.frames = 137
        state["episode"] += 1
        return response

    def reset(request, response):
        response.success = request.seed >= 0
        response.message = f"seed {request.seed}"
        response.episode = state["episode"]
        return response

    def discard(request, response):
        response.success = True
        response.message = "discarded"
        return response

    def enable(request, response):
        response.success = True
        response.message = f"acting={request.data}"
        return response

    node.create_service(StartEpisode, "start_episode", start)
    node.create_service(StopEpisode, "stop_episode", stop)
    node.create_service(ResetEnv, "reset_env", reset)
    node.create_service(Trigger, "discard_episode", discard)
    node.create_service(SetBool, "enable", enable)
    print("READY", flush=True)
    rclpy.spin(node)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
