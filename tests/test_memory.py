"""glibc's heaps under the server's many threads: capped, so that freed memory is not kept per thread."""

import subprocess
import sys
from pathlib import Path

import pytest

from collectors import memory

THREADS_ALLOCATING = """
import ctypes, sys, threading
from collectors import memory
if sys.argv[1] == "capped":
    assert memory.limit_arenas()
def allocate():
    kept = [bytearray(4096) for _ in range(2000)]
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena n:" block per heap, on stderr
"""


def _arenas(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", THREADS_ALLOCATING, mode], capture_output=True, text=True, check=True)
    return sum(line.startswith("Arena ") for line in done.stderr.splitlines())


@pytest.mark.skipif(not memory._glibc(), reason="glibc only")
def test_threads_share_at_most_the_capped_heaps():
    assert _arenas("free") > memory.ARENAS  # each thread would have a heap of its own
    assert 1 <= _arenas("capped") <= memory.ARENAS


def test_the_server_caps_the_heaps_before_it_starts():
    text = Path(__file__).parent.parent.joinpath("server.py").read_text()
    assert text.index("memory.limit_arenas()") < text.index("from streamlit")
