# %% [markdown]
# # Where does the work of a model go?
# A notebook-style tour of bricklab's model processor (run it as a script, or cell by cell in
# Jupyter / VS Code). It loads a bundled model at two batch sizes, finds the heaviest layers,
# groups work by operator, and compares the critical path with the total.

# %%
import collections
import pathlib
import sys

import bricklab

repo = pathlib.Path(__file__).resolve().parents[2]
path = sys.argv[1] if len(sys.argv) > 1 else str(repo / "models" / "bundled" / "resnet18.onnx")
model = bricklab.load(path, batch=1)
print(model, "-", len(model.nodes), "nodes,", f"{model.flops / 1e9:.2f} GFLOP at batch 1")

# %% The five heaviest layers
for node in sorted(model.nodes, key=lambda n: n.flops, reverse=True)[:5]:
    print(f"{node.name:40s} {node.op:10s} {str(node.output_shape):22s} {node.flops / 1e6:9.1f} MFLOP")

# %% Work and traffic by operator type
by_op = collections.defaultdict(lambda: [0, 0.0, 0.0])
for node in model.nodes:
    by_op[node.op][0] += 1
    by_op[node.op][1] += node.flops
    by_op[node.op][2] += node.bytes
for op, (count, flops, nbytes) in sorted(by_op.items(), key=lambda kv: -kv[1][1]):
    print(f"{op:20s} {count:4d} nodes {flops / model.flops:7.1%} of FLOPs {nbytes / 1e6:9.2f} MB moved")

# %% Batch scaling: FLOPs grow linearly with the batch
model8 = bricklab.load(path, batch=8)
print(f"batch 8: {model8.flops / 1e9:.2f} GFLOP ({model8.flops / model.flops:.2f}x batch 1)")

# %% Critical path by FLOPs: the least work a perfectly parallel runtime still does in sequence
length, path_nodes = model.critical_path({n.name: n.flops for n in model.nodes})
print(f"critical path: {len(path_nodes)} of {len(model.nodes)} nodes, {length / model.flops:.1%} of all FLOPs")
