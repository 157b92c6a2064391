"""A compute job's allocator keeps freed memory, so the next large buffer reuses it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# Fills and frees a 64 MB buffer, as a training step does its activations, then releases
# the free heap; resident MB at each point.
SCRIPT = """
import json, os, sys
import numpy as np
from kai.jobs.allocator import release_free_memory, retain_freed_memory
retained = retain_freed_memory() if sys.argv[1] == "retain" else False
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
before = resident_mb()
buffer = np.ones(8 << 20)
during = resident_mb()
del buffer
after = resident_mb()
release_free_memory()
released = resident_mb()
figures = {"during": during, "after": after, "released": released}
print(json.dumps({"retained": retained, **{k: v - before for k, v in figures.items()}}))
"""


def resident_growth(mode: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True, text=True
    )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def test_retained_memory_is_reused_instead_of_mapped_afresh() -> None:
    plain = resident_growth("plain")
    retained = resident_growth("retain")

    assert retained["retained"]
    assert plain["during"] > 60 and retained["during"] > 60
    # Unmapped on free by default: the next buffer would be mapped and zeroed afresh.
    assert plain["after"] < 10
    # Kept in the heap, where the next buffer of that size finds it.
    assert retained["after"] > 60
    # Handed back on request, before a fork would share those pages.
    assert retained["released"] < 10
