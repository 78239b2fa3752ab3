"""Write ``test-voice.onnx`` (+ ``.onnx.json``): a synthetic voice with piper's interface.

Real piper voices are tens of MB and would have to be downloaded; this one is a few
hundred bytes and only follows the contract piper's ``PiperVoice`` relies on: inputs
``input`` (phoneme ids, int64 [1, N]), ``input_lengths`` (int64 [1]) and ``scales``
(float [3]), output audio (float [1, 1, T]). Each phoneme id becomes 256 samples of a
tone whose pitch follows the id, so different text gives different, non-silent audio.
It says nothing intelligible: tests use it to check the plumbing, not the speech.

Regenerate with ``pip install onnx`` then ``python tests/support/piper_test_voice/make_voice.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper
from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

HOP = 256
SAMPLE_RATE = 16000
HERE = Path(__file__).parent


def build() -> onnx.ModelProto:
    def const(name: str, values: list[int] | list[float], kind: int) -> onnx.NodeProto:
        tensor = helper.make_tensor(name + "_value", kind, [len(values)], values)
        return helper.make_node("Constant", [], [name], value=tensor)

    def scalar(name: str, value: float | int, kind: int) -> onnx.NodeProto:
        tensor = helper.make_tensor(name + "_value", kind, [], [value])
        return helper.make_node("Constant", [], [name], value=tensor)

    nodes = [
        const("one", [1], TensorProto.INT64),
        const("hop", [HOP], TensorProto.INT64),
        const("axis2", [2], TensorProto.INT64),
        const("axis1", [1], TensorProto.INT64),
        const("flat", [1, -1], TensorProto.INT64),
        scalar("zero_s", 0.0, TensorProto.FLOAT),
        scalar("one_s", 1.0, TensorProto.FLOAT),
        const("rate", [0.004], TensorProto.FLOAT),
        # per-sample pitch: each id repeated HOP times -> [1, N * HOP]
        helper.make_node("Cast", ["input"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["ids", "axis2"], ["ids3"]),
        helper.make_node("Shape", ["input"], ["in_shape"]),
        helper.make_node("Concat", ["in_shape", "hop"], ["wide_shape"], axis=0),
        helper.make_node("Expand", ["ids3", "wide_shape"], ["wide"]),
        helper.make_node("Reshape", ["wide", "flat"], ["pitch"]),
        # sample index t = 0 .. N * HOP - 1
        helper.make_node("Shape", ["pitch"], ["pitch_shape"]),
        helper.make_node("Gather", ["pitch_shape", "one"], ["count_1"], axis=0),
        helper.make_node("Cast", ["count_1"], ["count_f"], to=TensorProto.FLOAT),
        helper.make_node("Squeeze", ["count_f"], ["count"]),
        helper.make_node("Range", ["zero_s", "count", "one_s"], ["t"]),
        # audio = sin(t * (pitch + 8) * rate) -> [1, 1, T]
        const("offset", [8.0], TensorProto.FLOAT),
        helper.make_node("Add", ["pitch", "offset"], ["pitch8"]),
        helper.make_node("Mul", ["pitch8", "t"], ["phase0"]),
        helper.make_node("Mul", ["phase0", "rate"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        helper.make_node("Unsqueeze", ["wave", "axis1"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "switchyard-test-voice",
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, "n"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "t"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def config() -> dict[str, object]:
    return {
        "audio": {"sample_rate": SAMPLE_RATE},
        "espeak": {"voice": "en-us"},
        "phoneme_type": "espeak",
        "num_symbols": max(i for ids in DEFAULT_PHONEME_ID_MAP.values() for i in ids) + 1,
        "num_speakers": 1,
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
        "phoneme_id_map": DEFAULT_PHONEME_ID_MAP,
    }


if __name__ == "__main__":
    onnx.save(build(), HERE / "test-voice.onnx")
    text = json.dumps(config(), ensure_ascii=False, indent=1)
    (HERE / "test-voice.onnx.json").write_text(text + "\n", encoding="utf-8")
