"""Cut a Piper (VITS) voice into the two ONNX parts Weir's tract engine runs.

tract 0.23 cannot run the whole Piper graph: a reshape check in the text encoder's relative
attention fails on a symbolic phoneme count, and the decoder's output length depends on the
predicted durations. So the graph is cut where the data-dependent length appears:

  part A  (text encoder + stochastic duration predictor), folded at a fixed phoneme count N:
      input        i64[1,N]    phoneme ids, zero-padded
      input_lengths i64[1]     number of real ids
      scales       f32[3]      [noise_scale, length_scale, noise_w] (noise_scale unused here)
      dp_noise     f32[1,2,N]  the duration predictor's Gaussian noise (made by Weir, seeded)
    ->
      durations    f32[1,1,N]  frames per phoneme (already ceil'ed; 0 on padding)
      m_p          f32[1,192,N] prior mean per phoneme
      logs_p       f32[1,192,N] prior log standard deviation per phoneme

  part B  (flow + HiFi-GAN decoder), F frames symbolic:
      z_p          f32[1,192,F] expanded prior sample
      y_mask       f32[1,1,F]   ones
    ->
      output       f32[1,1,1,F*256] audio at the voice's sample rate

Between them Weir repeats each phoneme's columns by its duration and adds
randn * exp(logs_p) * noise_scale (the model's own noise term).

The duration predictor's noise is a RandomNormalLike in the original graph; it is replaced by
the `dp_noise` input so that runs are reproducible with a seeded generator.
"""

import argparse
import sys

import onnx
from onnx import TensorProto, helper, utils

A_OUTPUTS = {
    "/Ceil_output_0": "durations",
    "/enc_p/Split_output_0": "m_p",
    "/enc_p/Split_output_1": "logs_p",
}
B_INPUTS = {"/Add_output_0": "z_p", "/Cast_2_output_0": "y_mask"}
DP_NOISE = "/dp/RandomNormalLike_output_0"


def rename(graph, old, new):
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name == old:
                n.input[i] = new
        for i, name in enumerate(n.output):
            if name == old:
                n.output[i] = new


def prune(model, outputs):
    """Keep only the nodes the given outputs depend on."""
    g = model.graph
    producer = {o: n for n in g.node for o in n.output}
    need, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        n = producer.get(name)
        if n is None or id(n) in need:
            continue
        need.add(id(n))
        stack.extend(n.input)
    keep = [n for n in g.node if id(n) in need]
    del g.node[:]
    g.node.extend(keep)
    used = {i for n in keep for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    inputs = [i for i in g.input if i.name in used]
    del g.input[:]
    g.input.extend(inputs)


def part_a(src, n):
    m = onnx.load(src)
    g = m.graph
    rand = [x for x in g.node if x.op_type == "RandomNormalLike" and x.output[0] == DP_NOISE]
    if len(rand) != 1:
        sys.exit("convert_piper: the duration predictor's RandomNormalLike was not found")
    g.node.remove(rand[0])
    rename(g, DP_NOISE, "dp_noise")
    for old, new in A_OUTPUTS.items():
        rename(g, old, new)
    del g.output[:]
    g.output.extend(
        [
            helper.make_tensor_value_info("durations", TensorProto.FLOAT, [1, 1, n]),
            helper.make_tensor_value_info("m_p", TensorProto.FLOAT, [1, 192, n]),
            helper.make_tensor_value_info("logs_p", TensorProto.FLOAT, [1, 192, n]),
        ]
    )
    del g.input[:]
    g.input.extend(
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, n]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("dp_noise", TensorProto.FLOAT, [1, 2, n]),
        ]
    )
    del g.value_info[:]
    prune(m, [o.name for o in g.output])
    # onnxsim folds the shape arithmetic at the fixed length; it cannot fold randomness,
    # which is why the noise is an input.
    from onnxsim import simplify

    m, ok = simplify(m)
    if not ok:
        sys.exit("convert_piper: onnxsim could not validate part A")
    del m.graph.value_info[:]
    return m


def part_b(src):
    m = onnx.load(src)
    g = m.graph
    for old, new in B_INPUTS.items():
        rename(g, old, new)
    cut = [n for n in g.node if set(n.output) & set(B_INPUTS.values())]
    for n in cut:
        g.node.remove(n)
    del g.input[:]
    g.input.extend(
        [
            helper.make_tensor_value_info("z_p", TensorProto.FLOAT, [1, 192, "frames"]),
            helper.make_tensor_value_info("y_mask", TensorProto.FLOAT, [1, 1, "frames"]),
        ]
    )
    out = g.output[0].name
    del g.output[:]
    g.output.extend([helper.make_tensor_value_info(out, TensorProto.FLOAT, None)])
    del g.value_info[:]
    prune(m, [out])
    # Nothing upstream of z_p / y_mask may remain.
    names = {i.name for i in g.input} | {t.name for t in g.initializer}
    produced = {o for n in g.node for o in n.output}
    missing = {i for n in g.node for i in n.input if i and i not in names | produced}
    if missing:
        sys.exit(f"convert_piper: part B still needs {sorted(missing)[:5]}")
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True, help="the voice's .onnx file")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--phonemes", type=int, default=256, help="part A's fixed phoneme count")
    a = ap.parse_args()
    if not 16 <= a.phonemes <= 1024:
        sys.exit("convert_piper: --phonemes must be in 16..=1024")
    ma = part_a(a.onnx, a.phonemes)
    onnx.save(ma, f"{a.out}/part_a.onnx")
    mb = part_b(a.onnx)
    onnx.save(mb, f"{a.out}/part_b.onnx")
    print(f"convert_piper: part A {len(ma.graph.node)} nodes, part B {len(mb.graph.node)} nodes")


if __name__ == "__main__":
    main()
