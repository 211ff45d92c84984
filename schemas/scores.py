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


# SelectIT (scores/selectit). Lists run over the configured models (in config order) and,
# inside, over the rating prompts (the prompt file's first k lines); ratings are 1..5.
SELECTIT = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("selectit", pa.float64()),  # model level: the weighted mix of the models' sentence scores
        pa.field("selectit_sentence", pa.float64()),  # sentence level, first model: mean / (1 + alpha x std)
        pa.field("selectit_token", pa.float64()),  # token level, first model, first prompt
        pa.field("model_sentence", pa.list_(pa.float64())),  # [model] sentence-level score
        pa.field("token_scores", pa.list_(pa.list_(pa.float64()))),  # [model][prompt] token-level score
        pa.field("rating_probs", pa.list_(pa.list_(pa.list_(pa.float32(), 5)))),  # [model][prompt][rating - 1]
        pa.field("rating_mass", pa.list_(pa.list_(pa.float32()))),  # [model][prompt] probability on the digits
        pa.field("truncated", pa.bool_(), nullable=False),  # a rating prompt lost response text to max_length
    ]
)

# LESS (scores/less). `less` is the max over the configured target sets (the reference's
# aggregation over a target's subtasks); the lists follow the manifest's `targets` order.
LESS = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("less", pa.float64()),  # max over target sets of sum_c lr_c x mean cosine
        pa.field("less_by_target", pa.list_(pa.float64())),  # [target] sum_c lr_c x mean cosine
        pa.field("mean_cosine", pa.list_(pa.list_(pa.float64()))),  # [checkpoint][target] mean cosine
        pa.field("n_loss_tokens", pa.int32(), nullable=False),  # tokens the gradient's loss covers
        pa.field("truncated", pa.bool_(), nullable=False),  # the example was cut to max_length
    ]
)

# Contamination (scores/contamination): one row per pool row. The columns hold the row's
# strongest match (highest overlap; an exact match first at equal overlap); `matches` every
# match. A question shorter than its benchmark's n matches only exactly: matched_ngrams 1.
CONTAMINATION_MATCH = pa.struct(
    [
        pa.field("benchmark", pa.string()),
        pa.field("question_id", pa.string()),
        pa.field("matched_ngrams", pa.int32()),
        pa.field("overlap", pa.float64()),
    ]
)
CONTAMINATION = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("contaminated", pa.bool_(), nullable=False),
        pa.field("benchmark", pa.string()),  # null when clean
        pa.field("question_id", pa.string()),  # null when clean
        pa.field("matched_ngrams", pa.int32(), nullable=False),  # the question's n-grams found in the row; 0 clean
        pa.field("overlap", pa.float64(), nullable=False),  # matched / the question's n-grams; 1.0 exact; 0 clean
        pa.field("match", pa.string()),  # "ngram", "exact" or null
        pa.field("matches", pa.list_(CONTAMINATION_MATCH), nullable=False),
    ]
)

# Near-duplicates (scores/near_dup): MinHash-LSH clusters verified by the true Jaccard.
NEAR_DUP = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("cluster", pa.string(), nullable=False),  # the kept row's id; a row alone is its own cluster
        pa.field("cluster_size", pa.int32(), nullable=False),  # rows in the cluster (1: no near-duplicate)
        pa.field("keep", pa.bool_(), nullable=False),  # the cluster's kept row; selections skip the others
    ]
)

# Semantic duplicates (scores/semantic_dup): SemDeDup, cosine of embeddings within a k-means
# cluster; the same columns as scores/near_dup, so `dedupe: semantic` reads it the same way.
SEMANTIC_DUP = NEAR_DUP
