"""Fixtures for spawner tests that need real engines.

- ``slurm_cluster``: a single-node Slurm cluster (munged, slurmctld, slurmd) for the whole session, see
  tests/spawn/slurm_cluster.py. A cluster that cannot start fails the test with the daemons' logs; a machine
  without the Debian packages (or not root) fails under CI=true and skips elsewhere.
- ``slurm_user``: (name, password) of a Unix account with a home and a password (SlurmSpawner looks users up
  with pwd.getpwnam; the PAM login uses the password), created for the session and deleted afterwards.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess

import pytest

from tests.helpers.spawn import missing
from tests.spawn.slurm_cluster import ClusterError, SlurmCluster, missing_binaries


@pytest.fixture(scope="session")
def slurm_cluster():
    if os.geteuid() != 0:
        missing("the Slurm fixture runs slurmd as root (jobs run as other users)")
    absent = missing_binaries()
    if absent:
        missing(f"the Slurm fixture needs {', '.join(absent)} (apt-get install -y slurm-wlm munge)")
    cluster = SlurmCluster()
    try:
        cluster.start()
    except ClusterError as exc:
        cluster.remove()
        pytest.fail(str(exc), pytrace=False)  # a cluster that should start and does not is a failure anywhere
    try:
        yield cluster
    finally:
        cluster.stop()
        cluster.remove()


@pytest.fixture(scope="session")
def slurm_user():
    """A fresh Unix account with a home directory (jobs run and log there) and a password."""
    if os.geteuid() != 0:
        missing("creating a Unix account for Slurm jobs needs root")
    for tool in ("useradd", "userdel", "chpasswd"):
        if shutil.which(tool) is None:
            missing(f"the Slurm spawner tests need {tool} (apt-get install -y passwd)")
    name = "gwslurm" + secrets.token_hex(3)
    password = "Slurm-" + secrets.token_hex(8)
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True, capture_output=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
        pwd.getpwnam(name)
        yield name, password
    finally:
        subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)
