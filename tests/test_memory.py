"""The CPU allocator setting: applied once on glibc Linux, switchable off from the environment."""
import json
import os
import subprocess
import sys

import pytest

CHECK = ("import json, os, imgtag; from imgtag.runtime.memory import keep_freed_memory; "
         "print(json.dumps([keep_freed_memory(), keep_freed_memory()]))")


def run(env: dict) -> list:
    base = {k: v for k, v in os.environ.items() if k not in ("IMGTAG_MALLOC_TUNE", "THP_MEM_ALLOC_ENABLE")}
    out = subprocess.run([sys.executable, "-c", CHECK], env={**base, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_applied_by_default_and_idempotent():
    assert run({}) == [True, True]


def test_switched_off_from_the_environment():
    assert run({"IMGTAG_MALLOC_TUNE": "0"}) == [False, False]
