"""Fixtures for the CLI tests: the zerotrain binary (ZEROTRAIN_BIN, default build/zerotrain) and a runner."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def zerotrain_bin():
    path = pathlib.Path(os.environ.get("ZEROTRAIN_BIN", ROOT / "build" / "zerotrain"))
    if not path.exists():
        pytest.fail(f"zerotrain binary not found at {path}: build first (scripts/test.sh does)")
    return path


@pytest.fixture
def run(zerotrain_bin):
    def _run(*args, check_rc=None):
        proc = subprocess.run([str(zerotrain_bin), *map(str, args)], capture_output=True, text=True, timeout=60)
        if check_rc is not None:
            assert proc.returncode == check_rc, f"rc {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc

    return _run


@pytest.fixture
def examples():
    return ROOT / "examples" / "configs"
