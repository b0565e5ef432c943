"""Giving the memory a process freed back to the operating system.

TensorFlow's first call of a large function builds and optimises its graph
(Grappler) in hundreds of MB of C++ heap that it frees at once; glibc's
malloc keeps most of those pages resident. A codec that trims them after a
small warm-up call and before the real image's activations are allocated
peaks 170-230 MiB lower (paper preset, 768x512; docs/performance.md, "Where the memory goes").
"""
import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=None)
def _malloc_trim():
  """glibc's malloc_trim, or None (another libc, or no libc found)."""
  name = ctypes.util.find_library("c")
  if name is None:
    return None
  try:
    trim = ctypes.CDLL(name).malloc_trim
  except (OSError, AttributeError):
    return None
  trim.argtypes = [ctypes.c_size_t]
  trim.restype = ctypes.c_int
  return trim


def release_free_memory():
  """Returns the C heap's free pages to the OS; False if it cannot (no glibc).

  Cheap (milliseconds) and safe at any time: it only releases pages malloc
  holds no data in.
  """
  trim = _malloc_trim()
  if trim is None:
    return False
  trim(0)
  return True
