"""How long a graph takes to stop on SIGINT, at several moments from start-up to steady state.

    python bench/bench_clean_stop.py [--repeats 3]

Starts `dp-ros launch evaluate` (state policy, no cameras), sends the runner SIGINT at each
moment, and prints JSON: per moment, the runner's exit codes, seconds from SIGINT to exit
(median, max), each node's stop time as the runner reports it, and any traceback lines. The
target (issue 14) is every node within 2 s, exit code 0, no traceback. Timing depends on load:
say what else ran.
"""

import argparse
import json
import os
import re
import signal
import statistics
import time

from dp_ros.testing.processes import ChildProcess

GRAPH = (
    "-m", "dp_ros.launching.runner", "launch", "evaluate", "checkpoint:=lift_state_consistency",
    "cameras:=false", "video_episodes:=0",
    "summary:=", "episodes:=50", "real_time_factor:=0.5",
)  # fmt: skip
MOMENTS = {
    "importing (0.5 s)": 0.5,
    "building (2.5 s)": 2.5,
    "configured": "policy_node: configure done",
    "acting": "sim reset:",
}
FAILURES = ("Traceback", "KeyboardInterrupt", "context is invalid", "Failed to publish")
STOPPED = re.compile(r"(\w+) ([0-9.]+) s")


def one_stop(moment) -> dict:
    runner = ChildProcess.python(*GRAPH, name="dp-ros")
    try:
        if isinstance(moment, float):
            time.sleep(moment)
        else:
            runner.wait_for(lambda line: moment in line, timeout=180)
            if moment == "sim reset:":
                time.sleep(1.0)
        sent = time.monotonic()
        os.kill(runner.process.pid, signal.SIGINT)
        code = runner.wait(timeout=60)
        seconds = time.monotonic() - sent
    finally:
        runner.stop()
    lines = runner.output().splitlines()
    nodes = {}
    for line in lines:
        if "stopped in " in line:
            nodes = {n: float(s) for n, s in STOPPED.findall(line.split("stopped in ", 1)[1])}
    bad = [line for line in lines if any(f in line for f in FAILURES)]
    return {"code": code, "seconds": seconds, "nodes": nodes, "failures": bad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    report = {"load_average_before": os.getloadavg()}
    for name, moment in MOMENTS.items():
        runs = [one_stop(moment) for _ in range(options.repeats)]
        times = [run["seconds"] for run in runs]
        report[name] = {
            "codes": [run["code"] for run in runs],
            "stop_s_median": round(statistics.median(times), 2),
            "stop_s_max": round(max(times), 2),
            "node_stop_s_max": {
                node: round(max(run["nodes"].get(node, 0.0) for run in runs), 2)
                for node in runs[0]["nodes"]
            },
            "failures": [line for run in runs for line in run["failures"]],
        }
    report["load_average_after"] = os.getloadavg()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
