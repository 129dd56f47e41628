"""Fast JSON for what ckptd encodes and decodes many times per job: job files and messages.

One part, under the store and the wire, over the pure core: the same rules as the core's
(strict JSON: no NaN or Infinity, UTF-8 only, numbers in range), at a fraction of the cost
(msgspec). Job files stay plain JSON that ``cat`` and ``jq`` read.
"""

from ckptd.codec.fastjson import decode_job, dumps, dumps_decoded, encode_job, loads

__all__ = ["decode_job", "dumps", "dumps_decoded", "encode_job", "loads"]
