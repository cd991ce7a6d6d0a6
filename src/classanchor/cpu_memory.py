"""Keep freed CPU memory in the process for the next batch instead of returning it to the kernel.

glibc's malloc maps every block of at least its mmap threshold (128 KiB, raised after frees up to 32 MiB)
fresh from the kernel and unmaps it on free, and gives heap tops above its trim threshold back. PyTorch
allocates every activation anew in each step, so on a CPU the large ones (32 MiB for a classifier32
convolution at batch 128) are mapped, zero-filled page by page (minor page faults) and unmapped again in every
step. Raising both thresholds (``mallopt``; the same switches as
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=...:glibc.malloc.trim_threshold=...``) keeps freed blocks for
the next batch. Measured with ``benchmarks/cpu_allocator.py`` (docs/speed.md section 1b; AMD EPYC, float32):
evaluation in a fresh process ran 1.18-1.55x faster and training 1.01-1.42x (most at 64 px). jemalloc and
tcmalloc do this too, but must be preloaded (``LD_PRELOAD``) before Python starts, which a pip-installed
command cannot arrange.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["KEEP_BYTES", "keep_freed_memory"]

#: Blocks up to this size come from (and return to) the heap; heap tops up to this size are kept.
KEEP_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>


def keep_freed_memory() -> bool:
    """Process-wide: glibc keeps freed blocks up to :data:`KEEP_BYTES` for reuse. True when set (glibc); False
    elsewhere (macOS, Windows, musl), where nothing changes.

    The process's resident memory then stays near its peak until it exits. The ``classanchor`` command and its
    Ray workers call this at start; call it in your own process to get the same speed from the Python API."""
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    done = [mallopt(option, KEEP_BYTES) for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD)]  # both, always
    return all(done)
