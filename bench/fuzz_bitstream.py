"""Fuzzes the DCAE container (and optionally a whole exported decoder).

Mutates valid bitstreams (truncations, bit flips, byte insertions and
deletions, splices of two bitstreams, header field rewrites with and without
a re-sealed checksum, payload bit flips, truncations and extensions behind a
re-sealed checksum, random bytes) and checks that every mutation either
raises InvalidArgumentError or decodes to exactly the original. Prints the
count of each outcome and the throughput.

  python bench/fuzz_bitstream.py --n 20000
  python bench/fuzz_bitstream.py --n 2000 --model saved_models/NAME

With --model, bitstreams are made by the exported model (container format
`container.FORMAT_VERSION`) from small random images and each mutation is
run through its `decompress` signature. Its payload is a rANS stream
followed by the digest of the coded symbols, so payload damage behind a
re-sealed checksum must be refused (by a check of the rANS decoder or by the
digest) or decode to the original image; only a re-sealed header rewrite
may decode to another image (of the size the header declares). Any other
outcome than a clean error is counted as a failure. The tests load this
file (`tests/bitstream_cases.py`) and use its `Mutator` (so the mutation
corpus is shared); both honour DCAE_FUZZ_SEED.
"""
import argparse
import collections
import os
import sys
import tempfile
import time

import numpy as np

MUTATIONS = ("truncate", "bit_flip", "insert", "delete", "splice",
             "rewrite", "rewrite_sealed", "payload_sealed", "resize_sealed",
             "random", "random_magic", "append")
# Mutations that re-seal the checksum: forged streams the checksum cannot
# catch, which the container alone returns (another payload or image size).
SEALED = ("rewrite_sealed", "payload_sealed", "resize_sealed")
# Of those, the ones a codec may decode to another image: a rewritten image
# size within the same latent size. Its payload ends with the digest of the
# coded symbols, which refuses any other damage behind the checksum.
CODEC_MAY_DIFFER = ("rewrite_sealed",)
# Bytes an appending mutation adds, at most.
MAX_APPENDED = 64
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
  """[(name, offset, size)] of the header fields of a valid bitstream.

  The header has a fixed layout (`container`); `data` is parsed only to
  refuse what is not a bitstream of this format.
  """
  from dcae_tf.codec import container  # pylint: disable=import-outside-toplevel
  container.read_header(data)
  return [("magic", 0, len(container.MAGIC)),
          ("version", container.VERSION_OFFSET, container.VERSION_SIZE),
          ("fingerprint", container.FINGERPRINT_OFFSET,
           container.FINGERPRINT_SIZE),
          ("height", container.DIMS_OFFSET, container.DIM_SIZE),
          ("width", container.DIMS_OFFSET + container.DIM_SIZE,
           container.DIM_SIZE),
          ("checksum", container.CHECKSUM_OFFSET, container.CHECKSUM_SIZE)]


def reseal(data, tf):
  """Recomputes the checksum of a (mutated) bitstream that has a header.

  Lets a mutation reach the checks behind the checksum (fingerprint, image
  size, and in a codec the rANS decoder and the symbols digest), as a
  deliberately forged bitstream would. Shorter data is returned unchanged.
  """
  from dcae_tf.codec import container  # pylint: disable=import-outside-toplevel
  if len(data) < container.HEADER_SIZE:
    return data
  covered = data[:container.CHECKSUM_OFFSET] + data[container.HEADER_SIZE:]
  digest = tf.fingerprint(tf.constant([covered]),
                          method=container.CHECKSUM_METHOD)
  return (data[:container.CHECKSUM_OFFSET] + digest[0].numpy().tobytes() +
          data[container.HEADER_SIZE:])


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
      if out in self.corpus:
        # E.g. all of `other`: a valid bitstream, the original of itself.
        index = self.corpus.index(out)
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
      # Damage behind a valid checksum reaches the rANS decoder itself.
      start = self._payload_start(index)
      buf = bytearray(data)
      if start < n:
        for _ in range(int(rng.integers(1, 4))):
          pos = int(rng.integers(start, n))
          buf[pos] ^= 1 << int(rng.integers(0, 8))
      out = reseal(bytes(buf), self._tf)
    elif kind == "resize_sealed":
      # No length field: a shorter or longer payload is another payload,
      # which only its decoder (rANS checks, symbols digest) can refuse.
      start = self._payload_start(index)
      if start < n and rng.integers(2):
        out = data[:int(rng.integers(start, n))]
      else:
        out = data + self._rand_bytes(int(rng.integers(1, MAX_APPENDED + 1)))
      out = reseal(out, self._tf)
    elif kind == "random":
      out = self._rand_bytes(int(rng.integers(0, 2 * n)))
    elif kind == "random_magic":
      # Magic and version kept, the rest random.
      out = data[:self._end_of(index, "version")] + self._rand_bytes(
          int(rng.integers(0, 2 * n)))
    elif kind == "append":
      out = data + self._rand_bytes(int(rng.integers(1, MAX_APPENDED + 1)))
    else:
      raise ValueError(f"unknown mutation {kind!r}")
    return kind, index, out

  def _end_of(self, index, field):
    """Offset of the byte after a header field of corpus entry `index`."""
    offset, size = {f: (o, s) for f, o, s in self.fields[index]}[field]
    return offset + size

  def _payload_start(self, index):
    return self._end_of(index, "checksum")


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


# Fake models of the container corpus: (name, fingerprint).
CONTAINER_MODELS = (("fuzz-a", "0123456789abcdef"),
                    ("fuzz-model-b", "fedcba9876543210"),
                    ("fuzz-c\u00e9", "00000000ffffffff"))
# Payload sizes of the container corpus (bytes).
PAYLOAD_SIZES = (0, 1, 7, 80, 300)
# Image sides of the container corpus: [1, MAX_CORPUS_SIDE).
MAX_CORPUS_SIDE = 300


def container_corpus(tf, rng, count):
  """`count` valid bitstreams of random payloads (some empty)."""
  from dcae_tf.codec import container_ops  # pylint: disable=import-outside-toplevel
  corpus = []
  for i in range(count):
    name, fingerprint = CONTAINER_MODELS[i % len(CONTAINER_MODELS)]
    payload = rng.integers(0, 256, size=int(rng.choice(PAYLOAD_SIZES)),
                           dtype=np.uint8).tobytes()
    entry = dict(payload=payload,
                 height=int(rng.integers(1, MAX_CORPUS_SIDE)),
                 width=int(rng.integers(1, MAX_CORPUS_SIDE)), name=name,
                 fingerprint=fingerprint)
    entry["data"] = container_ops.pack(
        tf.constant(payload), entry["height"], entry["width"],
        fingerprint).numpy()
    corpus.append(entry)
  return corpus


def container_decoders(tf, max_pixels, directory):
  """{model name: run(bytes) -> (height, width, payload)} as served.

  Each fake model's `unpack` is wrapped in a signature, saved as a
  SavedModel and loaded back: that is the serving path, and a loaded
  signature raises errors ~50x faster than a Python-traced tf.function
  (which serializes its stack traces on every error).
  """
  from dcae_tf.codec import container_ops  # pylint: disable=import-outside-toplevel

  def decoder(name, fingerprint):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decode(data):
      height, width, payload = container_ops.unpack(
          data, fingerprint, max_pixels, model_name=name)
      return {"height": height, "width": width, "payload": payload}
    return decode

  module = tf.Module()
  signatures = {}
  for i, (name, fingerprint) in enumerate(CONTAINER_MODELS):
    signatures[f"decode{i}"] = decoder(name, fingerprint)
    setattr(module, f"decode{i}", signatures[f"decode{i}"])
  tf.saved_model.save(module, directory, signatures=signatures)
  loaded = tf.saved_model.load(directory)
  runs = {}
  for i, (name, _) in enumerate(CONTAINER_MODELS):
    signature = loaded.signatures[f"decode{i}"]

    def run(data, signature=signature):
      out = signature(data=tf.constant(data))
      return (int(out["height"]), int(out["width"]),
              out["payload"].numpy())
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
    from dcae_tf.codec import container  # pylint: disable=import-outside-toplevel
    from dcae_tf.export import load_exported  # pylint: disable=import-outside-toplevel
    codec = load_exported(args.model)
    corpus, expected = [], []
    for _ in range(args.corpus):
      image = rng.integers(0, 256, (args.image_size, args.image_size, 3),
                           dtype=np.uint8)
      data = codec.compress(image)
      corpus.append(data)
      expected.append(codec.decompress_tensor(tf.constant(data)).numpy())
    try:
      container.read_header(corpus[0])
    except ValueError as e:
      # E.g. an export made with another container format version.
      print(f"error: cannot fuzz {args.model}: its bitstreams: {e}",
            file=sys.stderr)
      return 2
    runs = [lambda d: codec.decompress_tensor(tf.constant(d)).numpy()] * len(
        corpus)
    same = lambda a, b: a.shape == b.shape and np.array_equal(a, b)  # noqa: E731
    what = f"model {codec.metadata.get('name')} ({codec.path})"
    may_differ = CODEC_MAY_DIFFER
  else:
    entries = container_corpus(tf, rng, args.corpus)
    corpus = [e["data"] for e in entries]
    with tempfile.TemporaryDirectory() as tmp:
      decoders = container_decoders(tf, args.max_pixels, tmp)
    runs = [decoders[e["name"]] for e in entries]
    expected = [(e["height"], e["width"], e["payload"]) for e in entries]
    same = lambda a, b: a == b  # noqa: E731
    what = "container (container_ops.unpack in a loaded SavedModel signature)"

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
      # else, e.g. another image size: the checksum is no MAC.
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
