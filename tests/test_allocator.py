"""The malloc tuning (backends/allocator.py): freed activations stay in the heap and are reused.

Each case runs in a fresh interpreter (the setting is process-wide and one-way). The probe
allocates a 24 MB tensor (the size of one of SmolLM2's MLP activations on a 4,096-token pass)
and frees it, eight times, reading glibc's own accounting (mallinfo2) around the first and the
minor page faults of each. With glibc's defaults a block that large is its own mapping,
handed back to the kernel when freed; tuned, it comes from the heap, stays there when freed, and
once the heap has settled an allocation reuses it without a page being faulted in again.
Settling takes up to two extensions of the heap, and which request makes the second one
depends on the interpreter's own small allocations: seen at the second or the third request
(the alternating addresses of a freed block and its neighbour), so only the last four of the
eight are held to no faults. (An earlier version read the third request alone and failed when
the second extension came there.) (How many faults the defaults cost on a real pass
depends on glibc's adaptive thresholds, so that is not asserted: on a 2-layer model of SmolLM2's
widths, 1,506 to 155,650 were seen. The measured speed is in docs/benchmarks.md.)
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, json, resource
import torch
from iteralign.backends.allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory()
before = libc.mallinfo2()
block = torch.ones(6_000_000)  # 24 MB, written
during = libc.mallinfo2()
del block
after = libc.mallinfo2()
faults = []
for _ in range(7):  # the heap settles (up to two extensions), then every request reuses it
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(6_000_000)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
    del block
print(json.dumps({"applied": applied, "mapped_during": during.hblkhd - before.hblkhd,
                  "heap_free_after": after.fordblks, "faults": faults}))
"""

BLOCK = 24_000_000
PAGES = BLOCK // 4096


def probe(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_tuned_malloc_keeps_a_freed_activation_in_the_heap_and_reuses_it_without_page_faults():
    default, tuned = probe(ITERALIGN_MALLOC_TUNING="0"), probe()
    assert default["applied"] is False and tuned["applied"] is True
    # defaults: the block is a mapping of its own, gone when freed
    assert default["mapped_during"] >= BLOCK
    assert default["heap_free_after"] < BLOCK
    # tuned: it came from the heap, stays there freed, and is reused without faulting pages in
    assert tuned["mapped_during"] < BLOCK
    assert tuned["heap_free_after"] >= BLOCK
    settled = tuned["faults"][-4:]
    assert sum(settled) < PAGES // 100, tuned["faults"]
