"""The thread rule.

* One rule for the default thread count: the CPUs this process may use (affinity mask, capped by
  the cgroup's CPU quota), computed here independently from os.sched_getaffinity and cgroupfs,
  and printed by `bricklab info` and `bricklab run`.
* Thread counts outside 0..max are refused with an error naming the option (CLI exit 2,
  ValueError in Python), never silently oversubscribed.
"""
import json
import math
import os
import subprocess

import pytest

import bricklab

from conftest import BUNDLED


def expected_cpus():
    cpus = len(os.sched_getaffinity(0))
    quota = None
    rel = ""
    try:
        for line in open("/proc/self/cgroup"):
            if line.startswith("0::"):
                rel = line[3:].strip()
    except OSError:
        pass
    for path in (f"/sys/fs/cgroup{rel}/cpu.max", "/sys/fs/cgroup/cpu.max"):
        try:
            q, period = open(path).read().split()
        except (OSError, ValueError):
            continue
        quota = None if q == "max" else float(q) / float(period)
        break
    else:
        try:
            q = float(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
            period = float(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
            quota = q / period if q > 0 else None
        except OSError:
            pass
    if quota:
        cpus = min(cpus, max(1, math.ceil(quota - 1e-9)))
    return cpus


def run(cli, *args, env=None):
    return subprocess.run([cli, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)


def test_default_threads_are_the_usable_cpus(cli):
    assert bricklab.usable_cpus() == expected_cpus()
    info = json.loads(run(cli, "info", "--json").stdout)
    assert info["threads"]["default"] == expected_cpus()
    assert info["threads"]["max"] == 4 * os.cpu_count()
    out = json.loads(run(cli, "run", BUNDLED / "tiny_cnn.onnx", "--repeat", "1", "--json").stdout)
    assert out["threads"] == expected_cpus(), "run must print the thread count it used"


def test_absurd_thread_counts_are_refused(cli):
    top = 4 * os.cpu_count()
    p = run(cli, "run", BUNDLED / "tiny_cnn.onnx", "--threads", top + 1)
    assert p.returncode == 2 and "--threads" in p.stderr and str(top) in p.stderr, p.stderr
    for bad in (-1, top + 1, 10**6):
        with pytest.raises(ValueError, match="threads"):
            bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"), threads=bad)
    bricklab.Session(str(BUNDLED / "tiny_cnn.onnx"), threads=top)  # the maximum itself is accepted


def test_info_reports_the_openmp_wait_policy(cli):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    info = json.loads(run(cli, "info", "--json", env=env).stdout)
    assert info["threads"]["wait_policy"] == "libgomp's default"
    info = json.loads(run(cli, "info", "--json", env={**env, "OMP_WAIT_POLICY": "passive"}).stdout)
    assert info["threads"]["wait_policy"] == "OMP_WAIT_POLICY=passive"
