"""fp16 storage, fp32 compute: halve the bytes of large fp32 weights in an ONNX file without fp16 arithmetic.

Each fp32 initializer of at least `min_bytes` is stored as float16 under a new name, and a
`Cast(to=FLOAT)` node placed first in its graph recreates the original name. Every consumer (including
If/Loop subgraphs that read the weight as an implicit input from the outer graph, as optimum's merged
decoder does with its hoisted "*_merged_0" weights) still sees an fp32 tensor of the same name.

ONNX Runtime's constant folding (graph optimization level BASIC or above; the app and the build use ALL)
evaluates Cast(initializer) once at session creation and replaces it with an fp32 initializer, so the
run-time graph, its kernels (prepacked fp32 GEMMs, fused attention) and its speed are those of the fp32
file: the only numerical change is that every weight is rounded to fp16 once. That is a measured fact of
ORT, not of the ONNX standard; tests/test_weight_storage.py checks it on the installed onnxruntime.
With graph optimizations disabled the Cast would run on every call; nothing in this project does that.

Weights fp16 cannot hold (|w| > 65504, NaN/inf) stay fp32, as do initializers that are also graph inputs
(a caller may override those at run time, and the override must stay fp32).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from engine.fileio import atomic_write_bytes  # noqa: E402

DEFAULT_MIN_BYTES = 1 << 20  # smaller weights (norms, biases) are not worth a node each
FP16_MAX = float(np.finfo(np.float16).max)
CAST_SUFFIX = "/fp16_storage_cast"
FP16_SUFFIX = "_fp16"


@dataclass
class StorageReport:
    """What `store_fp32_weights_as_fp16` did: names converted, names left fp32 and why, file sizes."""

    converted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    max_abs_rounding_error: float = 0.0
    bytes_before: int = 0
    bytes_after: int = 0

    def summary(self) -> str:
        return (f"{len(self.converted)} fp32 weights stored as fp16, {self.bytes_before / 1e6:.1f} MB -> "
                f"{self.bytes_after / 1e6:.1f} MB (max abs rounding error {self.max_abs_rounding_error:.2e})"
                + (f"; left fp32: {self.skipped}" if self.skipped else ""))


def _subgraphs(graph):
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield attribute.g
            yield from attribute.graphs


def _graphs(graph):
    yield graph
    for sub in _subgraphs(graph):
        yield from _graphs(sub)


def _all_names(root) -> set[str]:
    """Every tensor and node name in the model, subgraphs included: new names must clash with none."""
    names: set[str] = set()
    for graph in _graphs(root):
        names.update(t.name for t in graph.initializer)
        names.update(v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info))
        for node in graph.node:
            names.update(node.input)
            names.update(node.output)
            names.add(node.name)
    return names


def _unique(name: str, taken: set[str]) -> str:
    candidate, index = name, 1
    while candidate in taken:
        candidate, index = f"{name}_{index}", index + 1
    taken.add(candidate)
    return candidate


def _convert_graph(graph, min_bytes: int, taken: set[str], report: StorageReport) -> None:
    from onnx import TensorProto, helper, numpy_helper

    for sub in _subgraphs(graph):  # subgraph-local weights get their Cast inside that subgraph
        _convert_graph(sub, min_bytes, taken, report)
    overridable = {v.name for v in graph.input}
    casts = []
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type != TensorProto.FLOAT:
            continue
        if int(np.prod(tensor.dims, dtype=np.int64)) * 4 < min_bytes:
            continue
        if tensor.name in overridable:
            report.skipped[tensor.name] = "also a graph input (may be overridden at run time)"
            continue
        weights = numpy_helper.to_array(tensor)
        if not np.isfinite(weights).all() or np.abs(weights).max() > FP16_MAX:
            report.skipped[tensor.name] = "values outside float16's range"
            continue
        half = weights.astype(np.float16)
        report.max_abs_rounding_error = max(report.max_abs_rounding_error,
                                            float(np.abs(half.astype(np.float32) - weights).max()))
        name = tensor.name  # read before the tensor is overwritten below
        stored_name = _unique(name + FP16_SUFFIX, taken)
        graph.initializer[index].CopyFrom(numpy_helper.from_array(half, stored_name))
        casts.append(helper.make_node("Cast", [stored_name], [name], to=TensorProto.FLOAT,
                                      name=_unique(name + CAST_SUFFIX, taken)))
        report.converted.append(name)
    # First in the graph: nodes must stay topologically sorted, and every consumer comes after its Cast.
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def store_fp32_weights_as_fp16(src: Path | str, dst: Path | str | None = None,
                               min_bytes: int = DEFAULT_MIN_BYTES) -> StorageReport:
    """Rewrite the ONNX model at `src` (into `dst`, default: in place, atomically) with fp16-stored weights."""
    import onnx

    src = Path(src)
    dst = Path(dst) if dst is not None else src
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such ONNX file")
    try:
        model = onnx.load(str(src), load_external_data=False)
    except Exception as exc:  # protobuf raises its own DecodeError; name the file
        raise ValueError(f"{src}: not a readable ONNX model ({exc})") from exc
    if any(t.data_location == onnx.TensorProto.EXTERNAL for g in _graphs(model.graph) for t in g.initializer):
        raise ValueError(f"{src}: weights in external data files are not supported (the output is one file)")
    if not any(o.domain in ("", "ai.onnx") and o.version >= 6 for o in model.opset_import):
        raise ValueError(f"{src}: default-domain opset < 6 has no Cast(to=FLOAT) with an int attribute")
    report = StorageReport(bytes_before=src.stat().st_size)
    _convert_graph(model.graph, min_bytes, _all_names(model.graph), report)
    if report.converted:
        onnx.checker.check_model(model)
        data = model.SerializeToString()
    else:  # nothing to store differently: keep the file byte for byte (re-serializing may reorder fields)
        data = src.read_bytes()
    if dst != src or report.converted:
        atomic_write_bytes(dst, data)
    report.bytes_after = dst.stat().st_size
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path, nargs="?")
    parser.add_argument("--min-bytes", type=int, default=DEFAULT_MIN_BYTES)
    args = parser.parse_args(argv)
    print(store_fp32_weights_as_fp16(args.src, args.dst, args.min_bytes).summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
