"""The embedding scorer's ONNX backend: one export a run, built by the driver, run by ONNX Runtime.

sentence-transformers' own `backend="onnx"` goes through optimum-onnx, whose only release
(0.1.0) pins transformers < 4.58 and optimum ~= 2.1 against this stack's transformers 5.19,
so the export here is torch's (TorchScript) exporter on the checkpoint's transformer module,
and int8 is ONNX Runtime's dynamic quantisation (int8 weights per output channel, uint8
activations: the u8s8 kernels AVX512-VNNI runs). Tokenising and pooling stay the checkpoint's
own sentence-transformers modules, so any Transformer + Pooling (+ Normalize) model works.

The exported file lives in RUN/models/_embedding-onnx/<key>.onnx, key = hash of the weights'
fingerprint, the precision and the exporter versions; it is written once, atomically, and the
actors read it by its location, as they read the checkpoint. Not as bytes in the actors'
constructor arguments: Ray Data keys an actor's UDF by the repr of those arguments, which for
a model's bytes is a string 2-3x their size (MiniLM float32: 254 MB for 90 MB), pickled to
every actor and kept there.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings

import numpy as np

from pipelines import fences, storage

OPSET = 17
FOLDER = ("models", "_embedding-onnx")  # "_": no model or arm name (fences.Name) can take it
PRECISIONS = ("float32", "int8")


def ensure_exported(location: str, fingerprint: dict, precision: str, run_dir: str) -> str:
    """The location of the exported (for int8 quantised) model in the run's cache, exported
    into it first when absent."""
    target = cache_location(run_dir, fingerprint, precision)
    if not storage.exists(target):
        # a killed export's half-written model (up to the model's size); the run lock means
        # no other driver is writing here
        storage.remove_temporaries(storage.join(run_dir, *FOLDER), within=run_dir)
        with tempfile.TemporaryDirectory(prefix="winnow-onnx-") as scratch:
            data = export(location, precision, scratch)
        storage.write_bytes_atomic(data, target)  # its temporary is target's sibling: inside the fence too
    return target


def cache_location(run_dir: str, fingerprint: dict, precision: str) -> str:
    """RUN/models/_embedding-onnx/<key>.onnx, checked to lie inside the run folder."""
    return fences.check_inside(run_dir, storage.join(run_dir, *FOLDER, f"{_key(fingerprint, precision)}.onnx"))


def export(location: str, precision: str, scratch: str) -> bytes:
    """Export the checkpoint's transformer (token embeddings out) to ONNX; int8: quantised after."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(location, device="cpu")
    sample = model.preprocess(["a short text", "a somewhat longer text than the first one"])
    names = input_names(sample)
    wrapper = _token_embeddings(model[0].auto_model, names).eval()  # eval before: export restores the mode
    path = os.path.join(scratch, "model.onnx")
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*names, "token_embeddings")}
    # the tracer warns that BERT's mask arithmetic is traced as constants; the graph still takes
    # any batch and length (tests/test_embedding_backends.py checks it against float32 encode)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index")
        torch.onnx.export(
            wrapper,
            tuple(sample[name] for name in names),
            path,
            input_names=list(names),
            output_names=["token_embeddings"],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,  # the dynamo exporter needs onnxscript; the TorchScript one traces BERT fine
        )
    if precision == "int8":
        quantised = os.path.join(scratch, "model.int8.onnx")
        quantise(path, quantised)
        path = quantised
    with open(path, "rb") as handle:
        return handle.read()


def quantise(source: str, target: str, keep_float32: tuple[str, ...] = ()) -> None:
    """ONNX Runtime's dynamic int8 of `source`'s MatMuls and Gathers into `target`; the nodes
    named in `keep_float32` stay float32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # per channel: per-tensor int8 weights left MiniLM at cosine 0.92 to fp32 (bench/embedding.py)
    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True, nodes_to_exclude=list(keep_float32))


def ffn_output_matmuls(path: str) -> tuple[str, ...]:
    """The MatMuls of a BERT-like export's feed-forward output projections (intermediate ->
    hidden, fed by GELU), by the module path the TorchScript exporter names them with. Kept in
    float32 they lifted MiniLM int8's worst per-row cosine to float32 from 0.986 to 0.996 (384
    GSM8K rows; docs/scoring.md), the most of the four kinds of linear layer."""
    import onnx

    nodes = onnx.load(path, load_external_data=False).graph.node
    return tuple(
        node.name
        for node in nodes
        if node.op_type == "MatMul" and node.name.endswith("/output/dense/MatMul") and "/attention/" not in node.name
    )


def input_names(features: dict) -> tuple[str, ...]:
    """The tokenizer outputs a BERT-like transformer takes, in a fixed order."""
    return tuple(name for name in ("input_ids", "attention_mask", "token_type_ids") if name in features)


class OnnxEncoder:
    """`encode(texts, batch_size)` as SentenceTransformer's, with ONNX Runtime running the transformer."""

    def __init__(self, location: str, model: str, threads: int, device: str, max_seq_length: int | None):
        """`location`: the checkpoint (tokenizer, pooling); `model`: the exported file's location."""
        import onnxruntime
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(location, device="cpu")  # its tokenizer and pooling modules
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        # the device is config's choice: the CUDA provider needs the onnxruntime-gpu wheel
        providers = ["CUDAExecutionProvider"] if device.startswith("cuda") else []
        with storage.open_input(model, compression=None) as stream:  # a local path or an object-store URI
            data = stream.read()
        self.session = onnxruntime.InferenceSession(data, options, providers=[*providers, "CPUExecutionProvider"])
        self.names = [node.name for node in self.session.get_inputs()]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        order = np.argsort([-len(text) for text in texts], kind="stable")  # less padding, as encode does
        vectors = None
        for start in range(0, len(texts), batch_size):
            chosen = order[start : start + batch_size]
            features = self.model.preprocess([texts[i] for i in chosen])
            (hidden,) = self.session.run(None, {name: features[name].numpy() for name in self.names})
            features["token_embeddings"] = torch.from_numpy(hidden)
            for module in list(self.model)[1:]:  # pooling (and Normalize) as the checkpoint says
                features = module(features)
            pooled = features["sentence_embedding"].numpy()
            if vectors is None:
                vectors = np.empty((len(texts), pooled.shape[1]), np.float32)
            vectors[chosen] = pooled
        return vectors if vectors is not None else np.empty((0, self.model.get_embedding_dimension()), np.float32)


def _token_embeddings(transformer, names: tuple[str, ...]):
    """A torch module mapping the positional inputs the exporter passes to the transformer's
    keyword ones, with the token embeddings (last hidden state) out."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors):
            return self.transformer(**dict(zip(names, tensors, strict=True))).last_hidden_state

    return TokenEmbeddings()


def _key(fingerprint: dict, precision: str) -> str:
    import onnxruntime
    import torch

    document = {"model": fingerprint, "precision": precision, "opset": OPSET}
    document["versions"] = [torch.__version__, onnxruntime.__version__]
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:20]
