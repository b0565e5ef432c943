"""TensorFlow's error texts turned into one-line messages (no TensorFlow).

Graph assertion failures arrive wrapped in "Graph execution error" text,
C-escaped, with node names; the command line and the model server show
users the plain message instead. The container's messages avoid quote
characters for that reason (TensorFlow escapes them inside assertions).
"""
import codecs
import re

# A codec's decoder got other symbols back than its encoder coded (see
# `digest.symbols_digest`).
LATENTS_MISMATCH = (
    "DCAE bitstream decoded to other latents than its encoder coded: the "
    "payload was damaged behind a valid checksum, or the decoder's "
    "entropy parameters are not the encoder's (a model changed under the "
    "same fingerprint)")
# The rANS decoder's own checks (`dcae_tf.rans`) start with this.
_RANS_PREFIX = "rans: "

_ASSERT_RE = re.compile(r"assertion failed: \[(.*?)\]\s*(?:\n|\[\[|$)",
                        re.DOTALL)
_NODE_RE = re.compile(r"\{\{[^}]*\}\}\s*")


def error_message(error):
  """The plain one-line message of a (graph or eager) TF error.

  Graph assertion failures read "Graph execution error: ... assertion
  failed: [text] [[{{node ...}}]]" with the text C-escaped; this returns
  just the text. The rANS decoder's own checks run only behind a valid
  checksum, so they fail for the reasons of `LATENTS_MISMATCH` and read as
  it, with the check that failed in parentheses.
  Other errors: their first non-empty line without "{{function_node ...}}"
  prefixes.
  """
  text = getattr(error, "message", None) or str(error)
  match = _ASSERT_RE.search(text)
  if match:
    escaped = match.group(1).encode("utf-8")
    try:
      text = codecs.escape_decode(escaped)[0].decode("utf-8", errors="replace")
    except ValueError:
      text = match.group(1)
    # tf.debugging.assert_* append "[Condition ...] [x = ] [...]" fields.
    text = " ".join(text.split("] [")[0].split())
    if text.startswith(_RANS_PREFIX):
      text = f"{LATENTS_MISMATCH} ({text[len(_RANS_PREFIX):]})"
    return text
  lines = [_NODE_RE.sub("", line).strip() for line in text.splitlines()]
  lines = [l for l in lines if l and not l.startswith(
      ("Graph execution error", "Detected at node", "File ",
       # A loaded SavedModel's errors put this line before the message.
       "<stack traces unavailable>"))]
  text = lines[0] if lines else text.strip()
  text = re.sub(r"\s*\[Op:[^\]]*\]$", "", text)
  return text
