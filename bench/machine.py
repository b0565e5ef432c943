"""What a benchmark's numbers depend on: the CPU, its features and its load.

Shared by the benchmarks (`train_throughput.py`, `serving.py`); free of
TensorFlow, so a parent process that only orchestrates stays light.
"""
import datetime
import os
import platform

CPUINFO = "/proc/cpuinfo"
# CPU features that decide what reduced precision costs.
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
                "amx_bf16")
LOAD_DIGITS = 2


def _cpuinfo_field(name, path=CPUINFO):
  """The value of the first `name : value` line of /proc/cpuinfo, or None."""
  try:
    with open(path, encoding="ascii", errors="replace") as f:
      for line in f:
        if line.startswith(name):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def cpu_model(path=CPUINFO):
  """The CPU's model name (the platform's processor where /proc is absent)."""
  return (_cpuinfo_field("model name", path) or platform.processor() or
          platform.machine())


def cpu_features(path=CPUINFO):
  """Which of CPU_FEATURES the CPU has (empty where /proc is absent)."""
  flags = (_cpuinfo_field("flags", path) or "").split()
  return [name for name in CPU_FEATURES if name in flags]


def load_average():
  """(1, 5, 15)-minute load averages (None where the OS does not tell)."""
  return os.getloadavg() if hasattr(os, "getloadavg") else None


def load_average_1m():
  """The 1-minute load average, rounded (None where the OS does not tell)."""
  load = load_average()
  return round(load[0], LOAD_DIGITS) if load else None


def machine_info():
  """Date, CPU, cores, features and load (other processes' included)."""
  return dict(date=datetime.datetime.now().isoformat(timespec="seconds"),
              machine=platform.machine(), processor=platform.processor(),
              cpu=cpu_model(), cpu_count=os.cpu_count(),
              cpu_features=cpu_features(), load_average=load_average(),
              python=platform.python_version())
