"""One table per scorer, each keyed by the pool's `id`."""

import pyarrow as pa

COMPRESSION = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("n_bytes", pa.int64(), nullable=False),  # UTF-8 bytes of the rendered text
        pa.field("n_bytes_compressed", pa.int64(), nullable=False),  # zlib at the configured level
        pa.field("compression_ratio", pa.float64(), nullable=False),  # n_bytes / n_bytes_compressed
    ]
)

MODEL_LOSS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("n_prompt_tokens", pa.int32(), nullable=False),  # before truncation
        pa.field("n_response_tokens", pa.int32(), nullable=False),  # before truncation
        pa.field("loss_given_prompt", pa.float64()),  # mean NLL of response tokens after the prompt
        pa.field("loss_alone", pa.float64()),  # mean NLL of response tokens after the marker only
        pa.field("ifd", pa.float64()),  # loss_given_prompt / loss_alone; null when truncated
        pa.field("truncated", pa.bool_(), nullable=False),  # a response token fell past max_length
    ]
)

CLUSTERS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("cluster", pa.int32(), nullable=False),
        pa.field("distance", pa.float32(), nullable=False),  # Euclidean, to the cluster's centroid
    ]
)


def embedding(dim: int) -> pa.Schema:
    """The embedding table for a model of `dim` dimensions (vectors are L2-normalised)."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )
