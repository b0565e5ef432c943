"""The coder's parameters: every limit and layout constant, in one place."""

# rANS parameters: state in [STATE_LOWER, STATE_LOWER << WORD_BITS).
WORD_BITS = 16
WORD_MASK = (1 << WORD_BITS) - 1
STATE_BITS = 18
STATE_LOWER = 1 << STATE_BITS
# A lane's final state is flushed into the bypass as its bit length above
# STATE_BITS (in HEAD_EXPONENT_BITS) and the bits below its leading one.
HEAD_EXPONENT_BITS = (WORD_BITS - 1).bit_length()
MAX_PRECISION = 16
# Lanes: at most this many (bounds a corrupt stream's allocation). By
# default as many as keep the loops near TARGET_STEPS steps in all, but no
# more than spend LANE_RATE_SHARE of the estimated payload on their flushes
# (about LANE_FLUSH_BITS each: STATE_BITS that the decoder's final state L
# carries for nothing, the exponent, and a state's spread in bit length).
MAX_LANES = 4096
TARGET_STEPS = 1500
LANE_RATE_SHARE = 0.0035
LANE_FLUSH_BITS = 21
# A table is coded sparsely when its most likely bin leaves at most
# 2**-SPARSE_ESCAPE_BITS of the mass to the others.
SPARSE_ESCAPE_BITS = 10
# Width classes of the decoder's table search (entries compared per lane).
CLASS_WIDTHS = (8, 32, 128, 512, 2048)
# Elias gamma exponents: magnitudes are below 2**33 (int32 differences).
MAX_GAMMA_EXPONENT = 32
# A bypass field (at most MAX_GAMMA_EXPONENT + 1 bits) is read from a window
# of this many bytes starting at its first bit's byte.
FIELD_WINDOW_BYTES = 5
BYTE_BITS = 8
# Bypass fields are packed into words of this many bits (a field of at
# most MAX_GAMMA_EXPONENT + 1 bits touches at most two).
PACK_WORD_BITS = 32
