"""The Slurm fixture itself: a real single-node cluster takes, runs and cancels a batch job."""

from __future__ import annotations

import subprocess
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


def test_a_job_runs_its_command_as_the_submitting_user(slurm_cluster, slurm_user, tmp_path):
    # what batchspawner does: sudo -E -u USER sbatch, the script on stdin; the job runs as that user
    home = subprocess.run(["getent", "passwd", slurm_user], capture_output=True, text=True,
                          check=True).stdout.split(":")[5]
    script = f"#!/bin/bash\n#SBATCH --output={home}/whoami_%j.log\n#SBATCH --chdir={home}\nsrun id -un\n"
    job_id = subprocess.run(["sudo", "-E", "-u", slurm_user, "sbatch", "--parsable"], input=script, text=True,
                            capture_output=True, env=slurm_cluster.env, check=True, timeout=30).stdout.strip()
    log = f"{home}/whoami_{job_id}.log"
    wait_until(lambda: not [j for j in slurm_cluster.jobs() if j["id"] == job_id])
    with open(log) as f:
        assert f.read().split() == [slurm_user]
