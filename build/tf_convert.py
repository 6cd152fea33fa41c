"""TensorFlow-side half of the scene models' build: convert to ONNX, and run the originals as the reference.

Runs in the conversion environment build/.venv-tf (TensorFlow + tf2onnx, numpy<2), never in the app and never
imported by build/.venv: build/scene_step.py calls it as a subprocess and reads back .onnx and .npz files.

    python build/tf_convert.py nanodet MODEL.json OUT.onnx --inputs X.npy --reference REF.npz
    python build/tf_convert.py selfie MODEL.tflite OUT.onnx --inputs X.npy --reference REF.npz

X.npy holds already-preprocessed inputs stacked on the batch axis (NanoDet: [B,3,416,416] BGR normalised;
selfie: [B,256,256,3] RGB in [0,1]); REF.npz receives the original model's outputs for each of them,
computed by TensorFlow without tf2onnx, so the step can compare the ONNX model against an independent reading
of the same source files.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

if not hasattr(np, "product"):  # tf2onnx 1.17 calls np.product, which numpy 2 removed
    np.product = np.prod

OPSET = 17


# ---------------------------------------------------------------- NanoDet (TFJS graph model)

def nanodet(model_json: Path, out_onnx: Path, inputs: Path | None, reference: Path | None) -> None:
    # tf2onnx reads the TFJS files itself; the reference below reads them independently into a TF GraphDef.
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tfjs", str(model_json), "--output", str(out_onnx),
                    "--opset", str(OPSET)], check=True)
    make_batch_dynamic(out_onnx)
    if inputs is not None and reference is not None:
        batch = np.load(inputs)
        np.savez(reference, **run_tfjs_graph(model_json, batch))


def load_tfjs_graph(model_json: Path):
    """The TFJS graph model as a TensorFlow GraphDef with its weights as constants (float16 weights widened)."""
    import tensorflow as tf
    from google.protobuf import json_format

    spec = json.loads(model_json.read_text(encoding="utf-8"))
    topology = spec["modelTopology"]
    graph_def = json_format.ParseDict({k: topology[k] for k in ("node", "library", "versions") if k in topology},
                                      tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    weights: dict[str, np.ndarray] = {}
    for group in spec["weightsManifest"]:
        blob = b"".join((model_json.parent / name).read_bytes() for name in group["paths"])
        offset = 0
        for item in group["weights"]:
            stored = np.dtype(item.get("quantization", {}).get("dtype", item["dtype"]))
            count = int(np.prod(item["shape"]))
            array = np.frombuffer(blob, dtype=stored, count=count, offset=offset)
            offset += count * stored.itemsize
            weights[item["name"]] = array.astype(item["dtype"]).reshape(item["shape"])
    for node in graph_def.node:
        if node.name in weights:
            # TFJS stores int64 constants as int32; the node's own dtype says what TensorFlow expects.
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type).as_numpy_dtype
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights.pop(node.name).astype(dtype)))
    if weights:
        raise SystemExit(f"{model_json}: weights without a graph node: {sorted(weights)[:5]}")
    return graph_def, spec["signature"]


def run_tfjs_graph(model_json: Path, batch: np.ndarray) -> dict[str, np.ndarray]:
    import tensorflow as tf

    graph_def, signature = load_tfjs_graph(model_json)
    input_name = next(iter(signature["inputs"]))
    output_names = sorted(signature["outputs"])
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    results: dict[str, list[np.ndarray]] = {name: [] for name in output_names}
    with tf.compat.v1.Session(graph=graph) as session:
        for one in batch:  # the graph's input has a fixed batch of 1
            got = session.run(output_names, {input_name: one[None]})
            for name, value in zip(output_names, got):
                results[name].append(value[0])
    return {name: np.stack(values) for name, values in results.items()}


def make_batch_dynamic(path: Path) -> None:
    import onnx

    model = onnx.load(str(path))
    free_batch(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def free_batch(model) -> None:
    """Both source graphs fix the batch at 1, in their input and in their Reshape targets; free both.

    A leading 1 in a Reshape target is taken to be the batch (in these graphs every Reshape keeps the batch
    first): the step checks that afterwards by comparing a batch of several images with single-image runs.
    """
    from onnx import numpy_helper

    graph = model.graph
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_value == 1:
            dims[0].dim_param = "batch"
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        shape = constant_value(graph, node.input[1])
        if shape is None:
            continue
        if shape.size > 1 and shape[0] == 1:
            shape = shape.copy()
            shape[0] = 0  # ONNX Reshape: 0 copies the input's own first dimension, the batch
            target = f"{node.name}/batch_free_shape"
            graph.initializer.append(numpy_helper.from_array(shape.astype(np.int64), target))
            node.input[1] = target
    for value in list(graph.value_info):
        graph.value_info.remove(value)  # stale batch-1 shapes would contradict the dynamic batch


def constant_value(graph, name: str) -> np.ndarray | None:
    """The value of a tensor computed from constants only (TFJS builds NanoDet's Reshape targets with
    SparseToDense + Add on constants), or None when it depends on the graph's input."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    initializers = {init.name: init for init in graph.initializer}
    if name in initializers:
        return numpy_helper.to_array(initializers[name])
    producers = {output: node for node in graph.node for output in node.output}
    needed, pending, used = [], [name], set()
    while pending:
        current = pending.pop()
        if current in initializers:
            used.add(current)
            continue
        if current not in producers:
            return None  # a graph input: not a constant
        node = producers[current]
        if node not in needed:
            needed.append(node)
            pending.extend(i for i in node.input if i)
    order = [node for node in graph.node if node in needed]
    value_info = helper.make_tensor_value_info(name, 0, None)
    subgraph = helper.make_graph(order, "constant", [], [value_info], [initializers[u] for u in used])
    model = helper.make_model(subgraph, opset_imports=[helper.make_opsetid("", OPSET)])
    return np.asarray(ReferenceEvaluator(model).run(None, {})[0])


# ---------------------------------------------------------------- MediaPipe selfie segmentation (TFLite)

CUSTOM_UPSAMPLE = "Convolution2DTransposeBias"
TFLITE_PADDING_SAME = 1  # TfLitePadding (C API enum), not the flatbuffer schema's Padding where SAME is 0


def selfie(tflite: Path, out_onnx: Path, inputs: Path | None, reference: Path | None) -> None:
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_tflite(str(tflite), opset=OPSET)
    model_proto = replace_transpose_bias(model_proto, read_upsample(tflite))
    import onnx

    free_batch(model_proto)
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, str(out_onnx))
    if inputs is not None and reference is not None:
        np.savez(reference, mask=run_selfie_tflite(tflite, np.load(inputs)))


def read_upsample(tflite: Path) -> dict:
    """MediaPipe's custom final layer: its kernel [O,H,W,I], bias and stride, read from the TFLite file."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite))
    graph = model.subgraphs[0]
    ops = [op for op in graph.operators if (model.operatorCodes[op.opcodeIndex].customCode or b"").decode() == CUSTOM_UPSAMPLE]
    if len(ops) != 1:
        raise SystemExit(f"{tflite}: expected one {CUSTOM_UPSAMPLE} node, found {len(ops)}")
    op = ops[0]
    # The options are a raw TfLiteTransposeConvParams: int32 padding (TfLitePadding), stride_width, stride_height
    padding, stride_w, stride_h = np.frombuffer(bytes(op.customOptions), dtype="<i4")[:3]
    if padding != TFLITE_PADDING_SAME:
        raise SystemExit(f"{tflite}: {CUSTOM_UPSAMPLE} padding {padding} is not SAME")
    kernel, bias = (tensor_value(model, graph, index) for index in op.inputs[1:3])
    return {"kernel": kernel, "bias": bias, "stride": (int(stride_h), int(stride_w)),
            "input": graph.tensors[op.inputs[0]].name.decode(), "output": graph.tensors[op.outputs[0]].name.decode()}


def tensor_value(model, graph, index: int) -> np.ndarray:
    """A constant tensor's value, following the DEQUANTIZE op MediaPipe puts in front of float16 weights."""
    from tensorflow.lite.python import schema_py_generated as schema

    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if index in op.outputs and builtin == schema.BuiltinOperator.DEQUANTIZE:
            return tensor_value(model, graph, op.inputs[0]).astype(np.float32)
    tensor = graph.tensors[index]
    dtype = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.FLOAT16: np.float16}[tensor.type]
    data = bytes(model.buffers[tensor.buffer].data)
    return np.frombuffer(data, dtype=dtype).reshape(tensor.shape)


def replace_transpose_bias(model_proto, upsample: dict):
    """Swap tf2onnx's leftover custom node for Transpose -> ConvTranspose (SAME_UPPER) -> Transpose."""
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    found = [n for n in graph.node if CUSTOM_UPSAMPLE in n.op_type]
    if len(found) != 1:
        raise SystemExit(f"tf2onnx left {len(found)} {CUSTOM_UPSAMPLE} nodes, expected 1")
    node = found[0]
    kernel = upsample["kernel"]  # [O, H, W, I] -> ONNX ConvTranspose wants [I, O, H, W]
    weight_name, bias_name = node.name + "/weight_iohw", node.name + "/bias"
    graph.initializer.extend([
        numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(3, 0, 1, 2)).astype(np.float32), weight_name),
        numpy_helper.from_array(upsample["bias"].astype(np.float32).reshape(-1), bias_name),
    ])
    nchw_in, nchw_out = node.name + "/nchw_in", node.name + "/nchw_out"
    new_nodes = [
        helper.make_node("Transpose", [node.input[0]], [nchw_in], perm=[0, 3, 1, 2], name=node.name + "/to_nchw"),
        helper.make_node("ConvTranspose", [nchw_in, weight_name, bias_name], [nchw_out], name=node.name + "/deconv",
                         kernel_shape=list(kernel.shape[1:3]), strides=list(upsample["stride"]), auto_pad="SAME_UPPER"),
        helper.make_node("Transpose", [nchw_out], [node.output[0]], perm=[0, 2, 3, 1], name=node.name + "/to_nhwc"),
    ]
    position = list(graph.node).index(node)
    graph.node.remove(node)
    for offset, new in enumerate(new_nodes):
        graph.node.insert(position + offset, new)
    used = {name for n in graph.node for name in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)  # the custom node's own weight copies
    return model_proto


def run_selfie_tflite(tflite: Path, batch: np.ndarray) -> np.ndarray:
    """The reference: TFLite runs every layer up to MediaPipe's custom upsampling, which TFLite's stock
    interpreter does not have; that last layer (a 2x2 stride-2 transposed convolution, which with kernel ==
    stride is one 2x2 patch per input pixel) and the sigmoid are done here in numpy from the file's own weights."""
    import tensorflow as tf

    upsample = read_upsample(tflite)
    truncated = truncate_before_upsample(tflite)
    interpreter = tf.lite.Interpreter(model_content=truncated, num_threads=2)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    feature_index = interpreter.get_output_details()[0]["index"]
    kernel = upsample["kernel"][0]  # [2, 2, I]
    stride_h, stride_w = upsample["stride"]
    masks = []
    for one in batch:
        interpreter.set_tensor(input_index, one[None].astype(np.float32))
        interpreter.invoke()
        feature = interpreter.get_tensor(feature_index)[0]  # [h, w, I]
        patches = np.einsum("hwc,abc->hawb", feature, kernel) + upsample["bias"][0]
        logits = patches.reshape(feature.shape[0] * stride_h, feature.shape[1] * stride_w)
        masks.append(np.exp(-np.logaddexp(0.0, -logits)))  # sigmoid without overflow
    return np.stack(masks)[..., None].astype(np.float32)


def truncate_before_upsample(tflite: Path) -> bytes:
    """The TFLite model with its output moved to the custom layer's input and everything after it removed."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(tflite))
    graph = model.subgraphs[0]
    names = [t.name.decode() for t in graph.tensors]
    feature = names.index(read_upsample(tflite)["input"])
    keep = []
    for op in graph.operators:
        if (model.operatorCodes[op.opcodeIndex].customCode or b"").decode() == CUSTOM_UPSAMPLE:
            break
        keep.append(op)
    graph.operators = keep
    graph.outputs = np.array([feature], dtype=np.int32)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["nanodet", "selfie"])
    parser.add_argument("source", type=Path)
    parser.add_argument("out_onnx", type=Path)
    parser.add_argument("--inputs", type=Path, help="preprocessed inputs (.npy) to run the original model on")
    parser.add_argument("--reference", type=Path, help="where to write the original model's outputs (.npz)")
    args = parser.parse_args(argv)
    convert = {"nanodet": nanodet, "selfie": selfie}[args.kind]
    convert(args.source, args.out_onnx, args.inputs, args.reference)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
