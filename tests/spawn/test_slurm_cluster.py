"""The Slurm fixture itself: a real single-node cluster takes, runs and cancels a batch job."""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float = 30.0, step: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def test_node_is_idle_in_the_debug_partition(slurm_cluster):
    out = slurm_cluster.client("sinfo", "-h", "-o", "%P %T %N").stdout.split()
    assert out == ["debug*", "idle", slurm_cluster.node]


def test_sbatch_squeue_scancel(slurm_cluster, tmp_path):
    submitted = slurm_cluster.client("sbatch", "--parsable", f"--chdir={tmp_path}", "--output=/dev/null",
                                     "--wrap", "sleep 60").stdout.strip()
    job_id = submitted.split(";")[0]
    assert job_id.isdigit()
    running = wait_until(lambda: [j for j in slurm_cluster.jobs() if j["id"] == job_id and j["state"] == "RUNNING"])
    assert running[0]["node"] == slurm_cluster.node
    slurm_cluster.client("scancel", job_id)
    wait_until(lambda: not [j for j in slurm_cluster.jobs() if j["id"] == job_id])
