"""Fuzzes the DCAE container (and optionally a whole exported decoder).

Mutates valid bitstreams (truncations, bit flips, byte insertions and
deletions, splices of two bitstreams, header field rewrites with and without
a re-sealed checksum, payload bit flips behind a re-sealed checksum, random
bytes) and checks that every mutation either
raises InvalidArgumentError or decodes to exactly the original. Prints the
count of each outcome and the throughput.

  python bench/fuzz_bitstream.py --n 20000
  python bench/fuzz_bitstream.py --n 2000 --model saved_models/NAME

With --model, bitstreams are made by the exported model from small random
images and each mutation is run through its `decompress` signature; a
mutation the checksum cannot see must decode to the original image, and any
other outcome than a clean error is counted as a failure. `tests/
test_bitstream.py` imports `Mutator` from here (so the mutation corpus is
shared); both honour DCAE_FUZZ_SEED.
"""
import argparse
import collections
import os
import struct
import sys
import tempfile
import time

import numpy as np

MUTATIONS = ("truncate", "bit_flip", "insert", "delete", "splice",
             "rewrite", "rewrite_sealed", "payload_sealed", "random",
             "random_magic", "append")
# Mutations that re-seal the checksum: forged streams the checksum cannot
# catch, which may decode (to an image of the declared size).
SEALED = ("rewrite_sealed", "payload_sealed")
DEFAULT_SEED = 20250601
SEED_ENV = "DCAE_FUZZ_SEED"
# Outcomes.
ERROR = "error"                # InvalidArgumentError: the expected outcome.
SAME = "same"                  # Decoded to the original (mutation no-op).
VALID = "valid_resealed"       # A re-sealed rewrite that is a valid stream.
WRONG = "FAIL_wrong_output"    # Decoded to something else: a bug.
CRASH = "FAIL_other_error"     # Any other exception: a bug.
SLOW = "FAIL_too_slow"         # Over the per-case time limit: a bug.


def fuzz_seed(default=DEFAULT_SEED):
  """The seed: $DCAE_FUZZ_SEED if set, else `default`."""
  value = os.environ.get(SEED_ENV)
  return int(value) if value else default


def header_fields(data):
  """[(name, offset, size)] of the header fields of a valid bitstream."""
  from dcae_tf import bitstream  # pylint: disable=import-outside-toplevel
  header = bitstream.read_header(data)
  magic = len(bitstream.MAGIC)
  name_length = data[magic + 1]
  fields = [("magic", 0, magic), ("version", magic, 1),
            ("name_length", magic + 1, 1)]
  pos = magic + 2
  if name_length:
    fields.append(("name", pos, name_length))
  pos += name_length
  fields.append(("fingerprint", pos, bitstream.FINGERPRINT_SIZE))
  pos += bitstream.FINGERPRINT_SIZE
  fields += [("height", pos, 4), ("width", pos + 4, 4),
             ("num_strings", pos + 8, 2)]
  pos += 10
  for i in range(header["num_strings"]):
    fields.append((f"length{i}", pos, 4))
    pos += 4
  fields.append(("checksum", pos, bitstream.CHECKSUM_SIZE))
  return fields


def reseal(data, tf):
  """Recomputes the checksum of a (mutated) bitstream, if it can be parsed.

  Lets a rewrite reach the checks behind the checksum (model name, string
  count, image size), as a deliberately forged bitstream would.
  """
  from dcae_tf import bitstream  # pylint: disable=import-outside-toplevel
  magic = len(bitstream.MAGIC)
  if len(data) < magic + 2:
    return data
  name_length = data[magic + 1]
  count_pos = magic + 2 + name_length + bitstream.FINGERPRINT_SIZE + 8
  if len(data) < count_pos + 2:
    return data
  count, = struct.unpack_from(">H", data, count_pos)
  lengths_end = count_pos + 2 + 4 * count
  if len(data) < lengths_end + bitstream.CHECKSUM_SIZE:
    return data
  covered = data[:lengths_end] + data[lengths_end + bitstream.CHECKSUM_SIZE:]
  digest = tf.fingerprint(tf.constant([covered]), method="farmhash64")
  return (data[:lengths_end] + digest[0].numpy().tobytes() +
          data[lengths_end + bitstream.CHECKSUM_SIZE:])


class Mutator:
  """Makes mutated copies of valid bitstreams, deterministically per seed."""

  def __init__(self, corpus, seed, tf=None):
    """corpus: list of valid bitstreams (bytes), at least two for splices."""
    self.corpus = [bytes(c) for c in corpus]
    self.rng = np.random.default_rng(seed)
    self.fields = [header_fields(c) for c in self.corpus]
    self._tf = tf

  def _rand_bytes(self, n):
    return self.rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()

  def mutate(self, kind=None):
    """Returns (kind, index of the original in the corpus, mutated bytes)."""
    rng = self.rng
    kind = kind or MUTATIONS[rng.integers(len(MUTATIONS))]
    index = int(rng.integers(len(self.corpus)))
    data = self.corpus[index]
    n = len(data)
    if kind == "truncate":
      out = data[:int(rng.integers(0, n))]
    elif kind == "bit_flip":
      buf = bytearray(data)
      for _ in range(int(rng.integers(1, 4))):
        pos = int(rng.integers(0, n))
        buf[pos] ^= 1 << int(rng.integers(0, 8))
      out = bytes(buf)
    elif kind == "insert":
      pos = int(rng.integers(0, n + 1))
      out = data[:pos] + self._rand_bytes(int(rng.integers(1, 9))) + data[pos:]
    elif kind == "delete":
      pos = int(rng.integers(0, n))
      out = data[:pos] + data[pos + int(rng.integers(1, 9)):]
    elif kind == "splice":
      other = self.corpus[int(rng.integers(len(self.corpus)))]
      out = data[:int(rng.integers(0, n + 1))] + other[
          int(rng.integers(0, len(other) + 1)):]
    elif kind in ("rewrite", "rewrite_sealed"):
      fields = self.fields[index]
      _, offset, size = fields[int(rng.integers(len(fields)))]
      choice = rng.integers(4)
      if choice == 0:
        value = bytes(size)
      elif choice == 1:
        value = b"\xff" * size
      elif choice == 2 and size <= 4:
        old = int.from_bytes(data[offset:offset + size], "big")
        new = (old + int(rng.choice([-1, 1, 2, 1000]))) % (1 << (8 * size))
        value = new.to_bytes(size, "big")
      else:
        value = self._rand_bytes(size)
      out = data[:offset] + value + data[offset + size:]
      if kind == "rewrite_sealed":
        out = reseal(out, self._tf)
    elif kind == "payload_sealed":
      # Damage behind a valid checksum reaches the range decoder itself.
      _, checksum_offset, checksum_size = self.fields[index][-1]
      start = checksum_offset + checksum_size
      buf = bytearray(data)
      if start < n:
        for _ in range(int(rng.integers(1, 4))):
          pos = int(rng.integers(start, n))
          buf[pos] ^= 1 << int(rng.integers(0, 8))
      out = reseal(bytes(buf), self._tf)
    elif kind == "random":
      out = self._rand_bytes(int(rng.integers(0, 2 * n)))
    elif kind == "random_magic":
      out = data[:6] + self._rand_bytes(int(rng.integers(0, 2 * n)))
    elif kind == "append":
      out = data + self._rand_bytes(int(rng.integers(1, 64)))
    else:
      raise ValueError(f"unknown mutation {kind!r}")
    return kind, index, out


def classify(run, original, mutated, expected, same, time_limit):
  """Runs one case; returns (outcome, seconds, detail).

  run(bytes) decodes; `expected` is what decoding `original` gives and
  `same(a, b)` compares two decodings.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  try:
    result = run(mutated)
    detail = ""
    if mutated == original or same(result, expected):
      outcome = SAME
    else:
      outcome = WRONG
  except tf.errors.InvalidArgumentError as e:
    outcome, detail = ERROR, e.message
  except Exception as e:  # pylint: disable=broad-except
    outcome, detail = CRASH, f"{type(e).__name__}: {e}"
  seconds = time.perf_counter() - start
  if seconds > time_limit and outcome in (ERROR, SAME):
    outcome = SLOW
  return outcome, seconds, detail


# Fake models of the container corpus: (name, fingerprint, strings each).
CONTAINER_MODELS = (("fuzz-a", "0123456789abcdef", 1),
                    ("fuzz-model-b", "fedcba9876543210", 3),
                    ("fuzz-c\u00e9", "00000000ffffffff", 6))


def container_corpus(tf, rng, count):
  """`count` valid bitstreams of random strings (some empty)."""
  from dcae_tf import bitstream  # pylint: disable=import-outside-toplevel
  corpus = []
  for i in range(count):
    name, fingerprint, num = CONTAINER_MODELS[i % len(CONTAINER_MODELS)]
    strings = [rng.integers(0, 256, size=int(rng.choice([0, 1, 7, 80])),
                            dtype=np.uint8).tobytes() for _ in range(num)]
    entry = dict(strings=strings, height=int(rng.integers(1, 300)),
                 width=int(rng.integers(1, 300)), name=name,
                 fingerprint=fingerprint)
    entry["data"] = bitstream.pack(
        [tf.constant(s) for s in strings], entry["height"], entry["width"],
        name, fingerprint).numpy()
    corpus.append(entry)
  return corpus


def container_decoders(tf, max_pixels, directory):
  """{model name: run(bytes) -> (height, width, strings)} as served.

  Each fake model's `unpack` is wrapped in a signature, saved as a
  SavedModel and loaded back: that is the serving path, and a loaded
  signature raises errors ~50x faster than a Python-traced tf.function
  (which serializes its stack traces on every error).
  """
  from dcae_tf import bitstream  # pylint: disable=import-outside-toplevel

  def decoder(name, fingerprint, num):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decode(data):
      height, width, strings = bitstream.unpack(data, name, fingerprint, num,
                                                max_pixels)
      return {"height": height, "width": width, "strings": tf.stack(strings)}
    return decode

  module = tf.Module()
  signatures = {}
  for i, (name, fingerprint, num) in enumerate(CONTAINER_MODELS):
    signatures[f"decode{i}"] = decoder(name, fingerprint, num)
    setattr(module, f"decode{i}", signatures[f"decode{i}"])
  tf.saved_model.save(module, directory, signatures=signatures)
  loaded = tf.saved_model.load(directory)
  runs = {}
  for i, (name, _, _) in enumerate(CONTAINER_MODELS):
    signature = loaded.signatures[f"decode{i}"]

    def run(data, signature=signature):
      out = signature(data=tf.constant(data))
      return (int(out["height"]), int(out["width"]),
              list(out["strings"].numpy()))
    runs[name] = run
  return runs


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--n", type=int, default=20000,
                      help="number of mutations")
  parser.add_argument("--seed", type=int, default=None,
                      help=f"random seed (default ${SEED_ENV} or "
                           f"{DEFAULT_SEED})")
  parser.add_argument("--corpus", type=int, default=8,
                      help="number of valid bitstreams to mutate")
  parser.add_argument("--model", default=None,
                      help="exported SavedModel (base path or version dir) "
                           "to fuzz end to end")
  parser.add_argument("--image_size", type=int, default=64,
                      help="side of the random images given to --model")
  parser.add_argument("--time_limit", type=float, default=2.0,
                      help="seconds allowed per case")
  parser.add_argument("--max_pixels", type=int, default=1 << 20)
  parser.add_argument("--show", type=int, default=5,
                      help="failures to print in full")
  args = parser.parse_args(argv)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  seed = fuzz_seed() if args.seed is None else args.seed
  rng = np.random.default_rng(seed)

  # Mutations that may legitimately decode to something else.
  may_differ = SEALED
  if args.model:
    from dcae_tf.export import load_exported  # pylint: disable=import-outside-toplevel
    codec = load_exported(args.model)
    corpus, expected = [], []
    for _ in range(args.corpus):
      image = rng.integers(0, 256, (args.image_size, args.image_size, 3),
                           dtype=np.uint8)
      data = codec.compress(image)
      corpus.append(data)
      expected.append(codec.decompress_tensor(tf.constant(data)).numpy())
    runs = [lambda d: codec.decompress_tensor(tf.constant(d)).numpy()] * len(
        corpus)
    same = lambda a, b: a.shape == b.shape and np.array_equal(a, b)  # noqa: E731
    what = f"model {codec.metadata.get('name')} ({codec.path})"
    # Its bitstreams end with the digest of the coded symbols (exports made
    # since 2026-11-26): payload damage behind a re-sealed checksum must
    # then be refused, or change nothing the range decoder reads.
    from dcae_tf import bitstream, config  # pylint: disable=import-outside-toplevel
    from dcae_tf import codec as codec_lib  # pylint: disable=import-outside-toplevel
    if bitstream.read_header(corpus[0])["num_strings"] == (
        codec_lib.num_coded_strings(
            config.get_config(codec.metadata["preset"]))):
      may_differ = ("rewrite_sealed",)
  else:
    entries = container_corpus(tf, rng, args.corpus)
    corpus = [e["data"] for e in entries]
    with tempfile.TemporaryDirectory() as tmp:
      decoders = container_decoders(tf, args.max_pixels, tmp)
    runs = [decoders[e["name"]] for e in entries]
    expected = [(e["height"], e["width"], e["strings"]) for e in entries]
    same = lambda a, b: a == b  # noqa: E731
    what = "container (bitstream.unpack in a loaded SavedModel signature)"

  # Warm up (tracing) outside the timed loop.
  for run, data in zip(runs, corpus):
    run(data)
  mutator = Mutator(corpus, seed, tf=tf)
  counts = collections.Counter()
  by_kind = collections.defaultdict(collections.Counter)
  failures = []
  slowest = 0.0
  start = time.perf_counter()
  for _ in range(args.n):
    kind, index, mutated = mutator.mutate()
    outcome, seconds, detail = classify(
        runs[index], corpus[index], mutated, expected[index], same,
        args.time_limit)
    if outcome == WRONG and kind in may_differ:
      # A forged (re-sealed) bitstream may legitimately decode to something
      # else, e.g. string lengths moved around: the checksum is no MAC.
      outcome = VALID
    counts[outcome] += 1
    by_kind[kind][outcome] += 1
    slowest = max(slowest, seconds)
    if outcome.startswith("FAIL") and len(failures) < args.show:
      failures.append((kind, outcome, mutated[:80].hex(), detail[:300]))
  elapsed = time.perf_counter() - start

  print(f"fuzzed {what}: {args.n} mutations of {len(corpus)} bitstreams, "
        f"seed {seed}")
  for outcome, count in sorted(counts.items()):
    print(f"  {outcome:20s} {count}")
  print("by mutation:")
  for kind in MUTATIONS:
    row = ", ".join(f"{o} {c}" for o, c in sorted(by_kind[kind].items()))
    print(f"  {kind:15s} {row}")
  print(f"throughput: {args.n / elapsed:.0f} cases/s "
        f"({elapsed:.1f} s, slowest case {slowest * 1e3:.1f} ms)")
  for failure in failures:
    print("FAILURE", *failure)
  bad = sum(c for o, c in counts.items() if o.startswith("FAIL"))
  return 1 if bad else 0


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  sys.exit(main())
