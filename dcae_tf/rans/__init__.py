"""An exact entropy coder made of stock TensorFlow ops: interleaved rANS.

TFC's range coder is a set of custom ops that stock TF Serving, TFLite and
TF.js cannot run. This package codes the same integers with the same
quantised tables (TFC's `cdf` / `cdf_offset`, precision 16, overflow bin)
using only ops that TensorFlow 2.14 registers (`tf.while_loop`, integer and
bitwise arithmetic, gathers, cumulative sums, `tf.io.decode_raw`,
`tf.io.serialize_tensor` and `tf.strings.substr`), in graph mode with
unknown-size inputs. It imports neither tensorflow_compression nor other
dcae_tf modules: TFC entropy models are passed in and only read.

Modules: `params` (every limit), `tables` (the tables, stored once in
variables and viewed per graph), `entropy_models` (TFC models' tables and
the integers their `compress` codes), `bits` (bit fields, Elias gamma),
`encoder`, `decoder`. This package re-exports their public names.

Stream (one string for all groups)::

  [rANS words, in decoding order] ......................... [bypass bits]
   16-bit big-endian words, read from the front      read from the end

* Symbols are grouped (z, then y slice 0, 1, ...); the decoder resumes after
  each group, so a group's table indexes may depend on the groups before.
* Informative symbols: K rANS lanes (Giesen, arXiv 1402.3392) in lockstep,
  one `tf.while_loop` per group whose trip count is ceil(n / K), n the
  group's informative symbol count (known to the decoder from the table
  indexes). State x in [L, 2**34), L = 2**18, 16-bit renormalisation words;
  at most one word per lane and step. The words of the lanes that refill at
  a step are read in lane order at positions given by an exclusive cumsum
  over the refilling lanes; the encoder runs all steps of all groups
  backwards in one loop and lays its words out in that order. Lanes are
  shared by all groups: each lane's final state is flushed once per stream,
  into the bypass (its bit length above L in 4 bits, then its bits below
  the leading one); the encoder starts every lane at L and the decoder
  checks that every lane ends at L, a free integrity check. The symbols of
  a group are sorted (stably) by their table's width class before they are
  dealt to lanes, and each class that some table belongs to has its own
  loop, so the decoder's per-step table search (a gather of the lanes' CDF
  rows from a 2-D table and a compare-sum) reads few entries per lane.
  Lanes without a symbol in a step use an extra one-bin table that leaves
  a state unchanged.
* Nearly certain symbols, those whose table gives its most likely value at
  least 1 - 2**-SPARSE_ESCAPE_BITS: not in the loop. Their exceptions (the
  symbols that are not that value) are listed in the bypass: a count, the
  positions (fixed width), and the differences (Elias gamma + sign).
* Values outside a table's range: as in TFC, the table's last ("overflow")
  bin in the rANS stream, and the magnitude in the bypass, Elias gamma
  coded with a sign bit (TFC's cost exactly). Any int32 value round-trips.
* Bypass: Elias gamma codes are written as all of a block's unary prefixes,
  then all mantissas, so the decoder parses a block with a popcount, a
  cumsum and gathers, without a loop. K itself is the stream's first
  bypass field (gamma of K + 1), chosen by the encoder (`choose_lanes`).

Tables: a stream is coded with TFC's own tables, read from the entropy
model's variables (`TfcTables`) in each traced function: an export keeps
them once, in its variables, and its graphs derive the coder's views of
them at call time (see `tables`).

Bounded decoding: every loop's trip count comes from symbol counts; every
read is clamped into the stream and the totals are checked afterwards; a
decoded count or length that cannot be right (more lanes than
`MAX_LANES`, more exceptions than symbols, an Elias gamma exponent over 32)
raises `tf.errors.InvalidArgumentError` with a one-line message, as do a
stream that was read past its end, not consumed exactly, or whose lanes do
not end at L (`finish`). A damaged stream that passes all of these decodes
to wrong but bounded values, which the codec's symbols digest refuses.

Measured trade-off (bench/entropy_coding.py; docs/entropy_coding.md has
the tables; 2026-12-01, 2-core AMD EPYC with a load average of 8-12 from
other jobs, so times are ratios from one run): each lane costs ~21 bits
(the decoder's final state L carries STATE_BITS = 18 bits of nothing, plus
the exponent and a state's spread in bit length); L = 2**16 costs ~0.25 %
in coding loss at high rates, 2**18 nothing measurable. A loop step costs
~20-40 us decoding, ~20 us encoding (op dispatch; gathers with a 2-D index
into a flat table were 45 us slower per step than row gathers, hence the
width classes). So `choose_lanes` takes enough lanes for `TARGET_STEPS`
steps in all, but no more than spend LANE_RATE_SHARE of the payload that
the tables predict on flushes: at 0.1 bpp the rate target wins (7-12
lanes, payload 0.6 % above TFC's at a 0.45 % share; the coder's time was
12 % of the small codec's encode and 15 % of its decode); at 0.7-1 bpp
49-71 lanes, 0.47 % above TFC.
"""
from dcae_tf.rans.decoder import DecoderState
from dcae_tf.rans.decoder import decode
from dcae_tf.rans.decoder import decode_group
from dcae_tf.rans.decoder import finish
from dcae_tf.rans.decoder import start
from dcae_tf.rans.encoder import choose_lanes
from dcae_tf.rans.encoder import encode
from dcae_tf.rans.entropy_models import batched_dequantize
from dcae_tf.rans.entropy_models import batched_index
from dcae_tf.rans.entropy_models import batched_symbols
from dcae_tf.rans.entropy_models import batched_tables
from dcae_tf.rans.entropy_models import indexed_dequantize
from dcae_tf.rans.entropy_models import indexed_index
from dcae_tf.rans.entropy_models import indexed_symbols
from dcae_tf.rans.entropy_models import indexed_tables
from dcae_tf.rans.params import CLASS_WIDTHS
from dcae_tf.rans.params import LANE_FLUSH_BITS
from dcae_tf.rans.params import LANE_RATE_SHARE
from dcae_tf.rans.params import MAX_GAMMA_EXPONENT
from dcae_tf.rans.params import MAX_LANES
from dcae_tf.rans.params import MAX_PRECISION
from dcae_tf.rans.params import SPARSE_ESCAPE_BITS
from dcae_tf.rans.params import STATE_BITS
from dcae_tf.rans.params import STATE_LOWER
from dcae_tf.rans.params import TARGET_STEPS
from dcae_tf.rans.params import WORD_BITS
from dcae_tf.rans.tables import CodingTables
from dcae_tf.rans.tables import TableView
from dcae_tf.rans.tables import Tables
from dcae_tf.rans.tables import TfcTables
from dcae_tf.rans.tables import parse_tfc
from dcae_tf.rans.tables import tables_from_tfc
