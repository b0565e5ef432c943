"""Cold start: one image in a fresh process, against importing TensorFlow.

  python bench/cold_start.py [--model NAME] [--models_dir saved_models]
      [--image PATH] [--repeats 1] [--output cold_start.json]
      [--baseline "NAME=COMMAND"]

What a user who compresses one photograph waits for. Every figure is the
wall time of a fresh subprocess, end to end:

  import tf         python -c "import tensorflow"
  import tf+tfc     python -c "import tensorflow, tensorflow_compression"
  compress          dcae-tf compress PHOTO OUT.dcae --model NAME
  decompress        dcae-tf decompress OUT.dcae OUT.png

each printed as a ratio to the import times measured in the same run (the
machine's speed and load cancel out; the target is compress <= 1.5x
import). The commands run twice per mode: `uncached` with the graph cache
off (`runtime.graph_cache`: every first call optimises its graph), and
`cached` after one earlier run on the machine has stored the optimised
graphs, in a store of this run's own (a temporary directory), so what the
user's store holds does not matter. A phase process per mode and direction
breaks the command's time down in-process (import TensorFlow, import
dcae_tf's loader, load the export, first call with its warm-up, second
call) and records whether tensorflow_compression got imported (a format-2
export needs only TensorFlow).

--baseline times another codec's one-image run the same way: COMMAND runs
in a shell, in a fresh process, with `{image}` replaced by the photograph's
path, and the report gives the cached compress + decompress as a ratio to
it (docs/performance.md times the official PyTorch code so).

The photograph is a 768x512 crop of the first data/test image at least that
large (written to a temporary directory), unless --image is given.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pylint: disable=wrong-import-position
# It imports TensorFlow into this process; every timed process is fresh.
from dcae_tf.runtime import graph_cache  # noqa: E402

PHOTO_WIDTH, PHOTO_HEIGHT = 768, 512
TEST_GLOB = os.path.join(REPO_ROOT, "data", "test", "*.png")
CPUINFO_PATH = "/proc/cpuinfo"
TIMEOUT_SECONDS = 900
TARGET_RATIO = 1.5
MODES = ("uncached", "cached")
IMPORTS = {"import tf": "import tensorflow",
           "import tf+tfc": "import tensorflow, tensorflow_compression"}
# The phase process: what `dcae-tf compress` / `decompress` do, timed.
PHASE_SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import tensorflow as tf
t1 = time.perf_counter()
from dcae_tf.runtime import exported, graph_cache
t2 = time.perf_counter()
# The store dcae-tf would use: this mode's $DCAE_TF_GRAPH_CACHE.
codec = exported.ExportedCodec(sys.argv[2],
                               graph_cache=graph_cache.default_cache())
t3 = time.perf_counter()
if sys.argv[1] == "compress":
  from dcae_tf import io
  data = io.read_image(sys.argv[3])
  call, signature = codec.compress, "compress"
else:
  data = open(sys.argv[3], "rb").read()
  call, signature = codec.decompress, "decompress"
t4 = time.perf_counter()
call(data)
t5 = time.perf_counter()
call(data)
t6 = time.perf_counter()
print(json.dumps(dict(
    import_tf=t1 - t0, import_loader=t2 - t1, load=t3 - t2,
    first_call=t5 - t4, second_call=t6 - t5,
    tfc_imported="tensorflow_compression" in sys.modules,
    cache_state=codec.signatures[signature].cache_state)))
"""


def cpu_model():
  try:
    with open(CPUINFO_PATH, encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def cli_command():
  """The `dcae-tf` console script of this Python, else `python -m dcae_tf`."""
  script = os.path.join(os.path.dirname(sys.executable), "dcae-tf")
  return [script] if os.path.isfile(script) else [sys.executable, "-m",
                                                  "dcae_tf"]


def photo(directory):
  """A 768x512 PNG: a crop of the first data/test image that large."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  for path in sorted(glob.glob(TEST_GLOB)):
    with Image.open(path) as image:
      if image.width >= PHOTO_WIDTH and image.height >= PHOTO_HEIGHT:
        out = os.path.join(directory, f"photo_{PHOTO_WIDTH}x{PHOTO_HEIGHT}.png")
        image.convert("RGB").crop((0, 0, PHOTO_WIDTH, PHOTO_HEIGHT)).save(out)
        return out
  sys.exit(f"cold_start: error: no image of at least {PHOTO_WIDTH}x"
           f"{PHOTO_HEIGHT} in {TEST_GLOB}; pass --image")


def timed(command, env):
  """Wall seconds of a subprocess; its stdout. Exits on failure."""
  start = time.perf_counter()
  proc = subprocess.run(command, env=env, capture_output=True, text=True,
                        timeout=TIMEOUT_SECONDS, check=False)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    sys.exit(f"cold_start: error: {' '.join(command)} failed: "
             f"{proc.stderr.strip()[-500:]}")
  return seconds, proc.stdout


def mode_env(mode, store):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=os.pathsep.join(
                 [REPO_ROOT] + [p for p in [os.environ.get("PYTHONPATH")]
                                if p]))
  # dcae-tf's --graph_cache default, and the phase process's store.
  env[graph_cache.CACHE_ENV] = (store if mode == "cached"
                                else graph_cache.OFF)
  return env


def run_mode(mode, flags, image, work, store):
  """{"compress": s, "decompress": s, "phases": {...}} of one mode."""
  env = mode_env(mode, store)
  bitstream = os.path.join(work, f"{mode}.dcae")
  decoded = os.path.join(work, f"{mode}.png")
  options = ["--models_dir", flags.models_dir, "--model", flags.model]
  compress = cli_command() + ["compress"] + options + [image, bitstream]
  decompress = cli_command() + ["decompress"] + options + [bitstream, decoded]
  if mode == "cached":  # The earlier run that fills the store.
    timed(compress, env)
    timed(decompress, env)
  out = {"compress": min(timed(compress, env)[0]
                         for _ in range(flags.repeats)),
         "decompress": min(timed(decompress, env)[0]
                           for _ in range(flags.repeats))}
  model_path = os.path.join(flags.models_dir, flags.model)
  out["phases"] = {
      direction: json.loads(timed(
          [sys.executable, "-c", PHASE_SCRIPT, direction, model_path, source],
          env)[1].strip().splitlines()[-1])
      for direction, source in (("compress", image),
                                ("decompress", bitstream))}
  return out


def report(results):
  base = results["imports"]
  lines = [f"{results['date']}  {results['cpu']}  ({results['cores']} cores)"
           f"  load average {results['load_before']} -> "
           f"{results['load_after']}",
           f"model {results['model']}, image {results['image']}"]
  for name, seconds in base.items():
    lines.append(f"  {name:<14} {seconds:6.2f} s")
  for mode in MODES:
    for command in ("compress", "decompress"):
      seconds = results[mode][command]
      ratios = ", ".join(f"{seconds / s:.2f}x {n}" for n, s in base.items())
      lines.append(f"  {mode:<9}{command:<11} {seconds:6.2f} s  ({ratios})")
    for direction, p in results[mode]["phases"].items():
      lines.append(
          f"    {direction:<10} phases: import tf {p['import_tf']:.2f} + "
          f"loader {p['import_loader']:.2f} + load {p['load']:.2f} + first "
          f"call {p['first_call']:.2f} (graph cache: {p['cache_state']}); "
          f"second call {p['second_call']:.2f} s; tensorflow_compression "
          f"imported: {p['tfc_imported']}")
  ours = results["cached"]["compress"] + results["cached"]["decompress"]
  for name, seconds in results.get("baselines", {}).items():
    lines.append(f"  baseline {name}: {seconds:.2f} s; cached compress + "
                 f"decompress {ours:.2f} s = {ours / seconds:.2f}x")
  target = results["cached"]["compress"] / base["import tf+tfc"]
  lines.append(f"target: cached compress <= {TARGET_RATIO}x import tf+tfc: "
               f"{target:.2f}x ({'met' if target <= TARGET_RATIO else 'not met'})")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--models_dir", default=os.path.join(REPO_ROOT,
                                                           "saved_models"))
  parser.add_argument("--model", default=None,
                      help="model under --models_dir (default: its DEFAULT)")
  parser.add_argument("--image", default=None)
  parser.add_argument("--repeats", type=int, default=1,
                      help="timed runs per command (best is reported)")
  parser.add_argument("--output", default=None, help="also write JSON here")
  parser.add_argument("--baseline", action="append", default=[],
                      metavar="NAME=COMMAND",
                      help="another codec's one-image command ({image}: the "
                      "photograph), timed in fresh processes")
  flags = parser.parse_args()
  if flags.repeats < 1:
    sys.exit("cold_start: error: --repeats must be at least 1")
  pairs = [b.split("=", 1) for b in flags.baseline]
  if any(len(p) != 2 or not p[0] or not p[1] for p in pairs):
    sys.exit("cold_start: error: --baseline takes NAME=COMMAND")
  baselines = dict(pairs)
  if len(baselines) != len(pairs):
    sys.exit("cold_start: error: each --baseline needs a NAME of its own")
  if flags.model is None:
    try:
      with open(os.path.join(flags.models_dir, "DEFAULT"),
                encoding="utf-8") as f:
        flags.model = f.read().strip()
    except OSError:
      sys.exit(f"cold_start: error: no --model and no DEFAULT file in "
               f"{flags.models_dir}")
  with tempfile.TemporaryDirectory(prefix="cold_start_") as work:
    image = flags.image or photo(work)
    store = os.path.join(work, "graph_cache")
    env = mode_env("uncached", store)
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "cpu": cpu_model(), "cores": os.cpu_count(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "model": flags.model, "image": os.path.basename(image),
        "imports": {name: min(timed([sys.executable, "-c", code], env)[0]
                              for _ in range(flags.repeats))
                    for name, code in IMPORTS.items()},
    }
    for mode in MODES:
      results[mode] = run_mode(mode, flags, image, work, store)
    results["baselines"] = {
        name: min(timed(["sh", "-c", command.replace("{image}", image)],
                        env)[0] for _ in range(flags.repeats))
        for name, command in baselines.items()}
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
  print(report(results))
  if flags.output:
    with open(flags.output, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
