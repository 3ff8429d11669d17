"""Convert PEFT LoRA adapters of DeepSeek-OCR (v1, v2) to the tensor names vLLM serves.

Both services need it: the trainer converts at publish time, the inference service on
import of an adapter made elsewhere (the reference notebook) and on load as a check.

Two problems, both in ``docs/models.md``:

1. Names. An adapter trained on transformers' native ``DeepseekOcr2ForConditionalGeneration``
   names its modules ``base_model.model.model.language_model.layers.N...``. vLLM's DeepSeek-OCR
   mapper only knows the original layout (``model.layers.N...``); vLLM loads such an adapter
   WITHOUT error and applies nothing. We rename to the original layout.
2. Fused experts. peft ``target_parameters`` on the fused 3-D expert parameters writes one
   ``(r*E, in)`` / ``(out, r*E)`` pair per parameter, the pairs nested as
   ``experts.base_layer.lora_*`` / ``experts.lora_*`` in the order the parameters were listed.
   vLLM's default path wants per-expert ``experts.E.{gate,up,down}_proj.lora_{A,B}``
   (its built-in 3-D path, ``enable_mixed_moe_lora_format`` + ``is_3d_lora_weight``, also
   assumes the inner wrapper is gate_up; the order here is decided by shape instead). We split
   them: expert e's factors are rows ``e*r:(e+1)*r`` of A and columns ``e::E`` of B
   (peft's ``ParamWrapper.get_delta_weight``), and ``gate_up``'s B into its gate and up halves.

The conversion only slices and renames, so it works on raw bytes: bf16 adapters need
neither torch nor a bf16-capable numpy.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocrtune_shared.adapters import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, ServingLayout

# safetensors dtype -> numpy dtype of the same width; bf16 is moved as raw 16-bit words.
_NUMPY_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}

# Language-model modules vLLM's DeepSeek-OCR (v1 and v2) takes LoRA on: attention (packed into
# qkv_proj), the dense and shared-expert MLPs (packed into gate_up_proj), and routed experts per expert.
VLLM_DEEPSEEK_LINEAR_TARGETS = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
# Parts vLLM never applies LoRA to (vision towers, projector): an adapter touching them is refused,
# not silently served without them.
_VISION_PARTS = ("vision_tower", "sam_model", "qwen2_model", "vision_model", "multi_modal_projector", "projector.")

_PREFIX = "base_model.model."
_LORA_SUFFIX = re.compile(r"\.lora_(A|B)(?:\.[A-Za-z0-9_]+)?\.weight$")
_NATIVE_LM = re.compile(r"^model\.language_model\.(layers|embed_tokens|norm)(?=\.|$)")
_LAYER_MODULE = re.compile(r"^model\.layers\.\d+\.(self_attn|mlp)\.")
_EXPERT_MODULE = re.compile(r"^model\.layers\.\d+\.mlp\.experts\.\d+\.(gate_proj|up_proj|down_proj)$")
_FUSED_EXPERTS = re.compile(r"^(model\.layers\.\d+\.mlp\.experts)((?:\.base_layer)*)$")


class AdapterLayoutError(ValueError):
    """The adapter holds tensors vLLM cannot serve; ``modules`` names them."""

    def __init__(self, message: str, modules: list[str]):
        super().__init__(f"{message}: {', '.join(modules[:20])}{' ...' if len(modules) > 20 else ''}")
        self.modules = modules


@dataclass
class RawTensor:
    """A tensor as safetensors stores it: dtype name plus an array of the same byte width."""

    dtype: str
    array: np.ndarray


@dataclass
class ConversionReport:
    serving_layout: ServingLayout
    target_modules: list[str]
    renamed: int = 0
    """Tensors whose module path was renamed from the transformers-native layout."""
    split_expert_modules: list[str] = field(default_factory=list)
    """Fused-expert modules split into per-expert factors."""
    routed_experts: bool = False
    """Whether the adapter has routed-expert LoRA (served by vLLM only where fused-MoE LoRA runs: GPU)."""


def read_safetensors(path: Path | str) -> dict[str, RawTensor]:
    data = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    body = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        start, end = meta["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=_NUMPY_DTYPES[meta["dtype"]]).reshape(meta["shape"])
        tensors[name] = RawTensor(meta["dtype"], array)
    return tensors


def write_safetensors(path: Path | str, tensors: dict[str, RawTensor], metadata: dict[str, str] | None = None) -> None:
    header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        blob = np.ascontiguousarray(tensors[name].array).tobytes()
        header[name] = {"dtype": tensors[name].dtype, "shape": list(tensors[name].array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(encoded)))
        out.write(encoded)
        for blob in blobs:
            out.write(blob)


def _split_key(key: str) -> tuple[str, str]:
    """``base_model.model.<module>.lora_A.weight`` -> (``<module>``, ``lora_A.weight``); adapter names dropped."""
    if not key.startswith(_PREFIX):
        raise AdapterLayoutError("not a PEFT LoRA tensor name", [key])
    match = _LORA_SUFFIX.search(key)
    if match is None:
        raise AdapterLayoutError("not a LoRA factor (modules_to_save or bias tensors are not servable)", [key])
    return key[len(_PREFIX) : match.start()], f"lora_{match.group(1)}.weight"


def to_vllm_deepseek(
    tensors: dict[str, RawTensor],
    config: dict,
    *,
    hidden_size: int | None = None,
    moe_intermediate_size: int | None = None,
) -> tuple[dict[str, RawTensor], dict, ConversionReport]:
    """Rename and split ``tensors`` of a PEFT adapter on DeepSeek-OCR (v1 or v2) for vLLM.

    Returns the new tensors, the new ``adapter_config.json`` content and a report. Raises
    ``AdapterLayoutError`` naming the modules vLLM cannot serve (vision towers, projector,
    embeddings, lm_head, router, anything unknown). ``hidden_size`` and ``moe_intermediate_size``
    are read off the tensors when omitted; they tell a fused gate_up pair from a down pair.
    """
    modules: dict[str, dict[str, RawTensor]] = {}
    renamed = 0
    for key, tensor in tensors.items():
        module, factor = _split_key(key)
        new_module = _NATIVE_LM.sub(r"model.\1", module)
        renamed += new_module != module
        modules.setdefault(new_module, {})[factor] = tensor

    refused = sorted(m for m in modules if any(part in m for part in _VISION_PARTS))
    if refused:
        raise AdapterLayoutError("vLLM applies no LoRA to DeepSeek-OCR's vision towers or projector", refused)

    fused = {m: f for m, f in modules.items() if _FUSED_EXPERTS.match(m)}
    unknown = sorted(
        m for m in modules
        if m not in fused
        and not _EXPERT_MODULE.match(m)
        and not (_LAYER_MODULE.match(m) and m.rsplit(".", 1)[-1] in VLLM_DEEPSEEK_LINEAR_TARGETS)
    )
    if unknown:
        raise AdapterLayoutError(
            "vLLM serves LoRA on DeepSeek-OCR's q/k/v/o_proj, gate/up/down_proj and experts only; not on", unknown
        )
    for module, factors in modules.items():
        if set(factors) != {"lora_A.weight", "lora_B.weight"}:
            raise AdapterLayoutError("LoRA module without both A and B factors", [module])

    out = {
        f"{_PREFIX}{module}.{factor}": tensor
        for module, factors in modules.items()
        if module not in fused
        for factor, tensor in factors.items()
    }
    report = ConversionReport(serving_layout=ServingLayout.vllm_deepseek_ocr, target_modules=[], renamed=renamed)
    if fused:
        hidden = hidden_size or _infer_hidden_size(modules)
        by_layer: dict[str, list[dict[str, RawTensor]]] = {}
        for module, factors in sorted(fused.items()):
            by_layer.setdefault(_FUSED_EXPERTS.match(module).group(1), []).append(factors)
        for experts_module, pairs in by_layer.items():
            rank = _rank_for(config, experts_module)
            for pair, kind in _classify_pairs(experts_module, pairs, hidden, moe_intermediate_size):
                out.update(_split_fused_pair(experts_module, pair, rank, kind))
            report.split_expert_modules.append(experts_module)
    report.routed_experts = bool(fused) or any(_EXPERT_MODULE.match(m) for m in modules)
    leaves = sorted({_leaf(k) for k in out})
    report.target_modules = leaves

    new_config = dict(config)
    new_config["target_modules"] = leaves
    new_config.pop("target_parameters", None)
    # vLLM applies one scaling (alpha / r) to every module; per-module patterns would be lost silently.
    for pattern in ("rank_pattern", "alpha_pattern"):
        if new_config.get(pattern):
            raise AdapterLayoutError(f"per-module {pattern} is not servable by vLLM", sorted(new_config[pattern]))
        new_config.pop(pattern, None)
    return out, new_config, report


def _leaf(key: str) -> str:
    module = key[len(_PREFIX) :].rsplit(".lora_", 1)[0]
    return module.rsplit(".", 1)[-1]


def _rank_for(config: dict, module: str) -> int:
    rank = config.get("r")
    if not isinstance(rank, int) or rank < 1:
        raise AdapterLayoutError("adapter_config.json has no rank r", [module])
    return rank


def _infer_hidden_size(modules: dict[str, dict[str, RawTensor]]) -> int:
    """The language model's hidden size, read off an attention or MLP factor the adapter also holds."""
    for module, factors in modules.items():
        leaf = module.rsplit(".", 1)[-1]
        if leaf in {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"} and not _EXPERT_MODULE.match(module):
            return int(factors["lora_A.weight"].array.shape[1])
        if leaf in {"o_proj", "down_proj"} and not _EXPERT_MODULE.match(module):
            return int(factors["lora_B.weight"].array.shape[0])
    # Experts only: a layer's two fused pairs fit one way round, gate_up (r*E, H) / (2I, r*E)
    # with down (r*E, I) / (H, r*E).
    for experts_module in {m.split(".base_layer")[0] for m in modules if _FUSED_EXPERTS.match(m)}:
        pairs = [f for m, f in modules.items() if m.split(".base_layer")[0] == experts_module]
        if len(pairs) != 2:
            continue
        for gate_up, down in (pairs, pairs[::-1]):
            hidden = int(gate_up["lora_A.weight"].array.shape[1])
            if (int(down["lora_B.weight"].array.shape[0]) == hidden
                    and int(gate_up["lora_B.weight"].array.shape[0]) == 2 * int(down["lora_A.weight"].array.shape[1])):
                return hidden
    raise AdapterLayoutError("cannot tell gate_up from down in fused experts without hidden_size", sorted(modules))


def _classify_pairs(
    experts_module: str, pairs: list[dict[str, RawTensor]], hidden: int, moe_intermediate_size: int | None
) -> list[tuple[dict[str, RawTensor], str]]:
    """Tell each fused (A, B) pair's parameter by shape: gate_up is (r*E, H) / (2I, r*E), down (r*E, I) / (H, r*E).

    peft nests the wrappers in the order the user listed ``target_parameters``, so the name
    (``base_layer`` or not) says nothing. When 2I == H a lone pair is ambiguous by shape alone.
    """

    def dims(pair: dict[str, RawTensor]) -> tuple[int, int]:
        return int(pair["lora_A.weight"].array.shape[1]), int(pair["lora_B.weight"].array.shape[0])

    def could_be(pair: dict[str, RawTensor], kind: str) -> bool:
        in_f, out_f = dims(pair)
        if kind == "gate_up":
            return in_f == hidden and out_f % 2 == 0 and moe_intermediate_size in (None, out_f // 2)
        return out_f == hidden and moe_intermediate_size in (None, in_f)

    if len(pairs) == 2:
        first, second = pairs
        for gate_up, down in ((first, second), (second, first)):
            if could_be(gate_up, "gate_up") and could_be(down, "down") and dims(gate_up)[1] == 2 * dims(down)[0]:
                return [(gate_up, "gate_up"), (down, "down")]
    elif len(pairs) == 1:
        kinds = [kind for kind in ("gate_up", "down") if could_be(pairs[0], kind)]
        if len(kinds) == 1:
            return [(pairs[0], kinds[0])]
    shapes = [(p["lora_A.weight"].array.shape, p["lora_B.weight"].array.shape) for p in pairs]
    raise AdapterLayoutError(
        f"cannot tell gate_up from down in fused expert factors {shapes} (hidden {hidden}); "
        "give moe_intermediate_size", [experts_module]
    )


def _split_fused_pair(experts_module: str, pair: dict[str, RawTensor], rank: int, kind: str) -> dict[str, RawTensor]:
    a, b = pair["lora_A.weight"], pair["lora_B.weight"]
    rows, in_features = a.array.shape
    out_features, cols = b.array.shape
    if rows != cols or rows % rank:
        raise AdapterLayoutError(f"fused expert factors {a.array.shape} / {b.array.shape} do not fit rank {rank}",
                                 [experts_module])
    num_experts = rows // rank
    a_e = a.array.reshape(num_experts, rank, in_features)
    # peft reshapes B as (out, rank, experts): expert e owns columns e, e+E, e+2E, ...
    b_e = b.array.reshape(out_features, rank, num_experts).transpose(2, 0, 1)
    result: dict[str, RawTensor] = {}

    def put(expert: int, proj: str, lora_a: np.ndarray, lora_b: np.ndarray) -> None:
        base = f"{_PREFIX}{experts_module}.{expert}.{proj}"
        result[f"{base}.lora_A.weight"] = RawTensor(a.dtype, np.ascontiguousarray(lora_a))
        result[f"{base}.lora_B.weight"] = RawTensor(b.dtype, np.ascontiguousarray(lora_b))

    if kind == "gate_up":
        # Rows [0, I) of gate_up's output are gate, [I, 2I) up (transformers' chunk(2)).
        inter = out_features // 2
        for e in range(num_experts):
            put(e, "gate_proj", a_e[e], b_e[e, :inter])
            put(e, "up_proj", a_e[e], b_e[e, inter:])
    else:
        for e in range(num_experts):
            put(e, "down_proj", a_e[e], b_e[e])
    return result


def convert_adapter_folder(
    source: Path | str,
    target: Path | str,
    *,
    base_model: str | None = None,
    hidden_size: int | None = None,
    moe_intermediate_size: int | None = None,
) -> ConversionReport:
    """Read a PEFT adapter folder, write its vLLM DeepSeek-OCR form to ``target`` (created)."""
    source, target = Path(source), Path(target)
    config = json.loads((source / ADAPTER_CONFIG_FILE).read_text())
    tensors = read_safetensors(source / ADAPTER_WEIGHTS_FILE)
    new_tensors, new_config, report = to_vllm_deepseek(
        tensors, config, hidden_size=hidden_size, moe_intermediate_size=moe_intermediate_size
    )
    if base_model is not None:
        # The notebook records a local folder such as ./deepseek_ocr; the user names the real base.
        new_config["base_model_name_or_path"] = base_model
    target.mkdir(parents=True, exist_ok=True)
    write_safetensors(target / ADAPTER_WEIGHTS_FILE, new_tensors)
    (target / ADAPTER_CONFIG_FILE).write_text(json.dumps(new_config, indent=2))
    return report


def unservable_modules(tensor_names: list[str]) -> list[str]:
    """Modules of an adapter that vLLM's DeepSeek-OCR mapper would NOT land on a LoRA module.

    An adapter in the transformers-native layout loads in vLLM with no error and no effect;
    the inference service refuses any adapter for which this is non-empty.
    """
    bad = set()
    for key in tensor_names:
        try:
            module, _ = _split_key(key)
        except AdapterLayoutError:
            bad.add(key)
            continue
        leaf = module.rsplit(".", 1)[-1]
        if _EXPERT_MODULE.match(module):
            continue
        if _LAYER_MODULE.match(module) and leaf in VLLM_DEEPSEEK_LINEAR_TARGETS:
            continue
        bad.add(module)
    return sorted(bad)
