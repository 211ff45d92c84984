"""The pool (ingest's output), its staging form, and the rejects table every stage writes."""

import pyarrow as pa

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

POOL = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),  # content hash of the normalised messages
        pa.field("source", pa.string(), nullable=False),  # the config's source name
        pa.field("messages", pa.list_(MESSAGE), nullable=False),
        pa.field("reference", pa.string()),  # gold final answer, when the source has one
        pa.field("meta", pa.string()),  # JSON: file, row, format and the row's other fields
    ]
)

# What ingest's map step writes before duplicates are dropped: `seq` orders rows as they
# appear in the inputs (unit index << 32 | row), so "keep the first" is well defined.
STAGED_POOL = POOL.append(pa.field("seq", pa.int64(), nullable=False))

REJECTS = pa.schema(
    [
        pa.field("stage", pa.string(), nullable=False),
        pa.field("source", pa.string()),
        pa.field("file", pa.string()),
        pa.field("row", pa.int64()),  # 1-based record number in the file (line for JSON Lines)
        pa.field("field", pa.string()),  # the offending field, when one is to blame
        pa.field("reason", pa.string(), nullable=False),  # a short category, e.g. "empty turn"
        pa.field("detail", pa.string()),  # the full message
        pa.field("raw", pa.string()),  # the record as read, truncated
    ]
)
