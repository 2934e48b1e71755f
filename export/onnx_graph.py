"""Lowering of the ONNX graph to the streaming IR.

The graph comes from models.onnx.export_onnx (dynamo exporter, fixed opset, static shapes,
operator whitelist), which lives in models/ so that evaluation can time the same graph without
importing export/; its names are re-exported here for export's callers.

Lowering walks the ONNX nodes in order. Every runtime value is tracked as an array of element
ids with the value's ONNX shape: each element names (IR tensor, time step, channel). Layout ops
(Transpose, Reshape, Flatten, Squeeze, Unsqueeze, Slice, Gather with constant indices, Concat,
Identity) are applied to these id arrays with numpy, exactly as ONNX applies them to data, so
any arrangement the exporter produces is understood without pattern matching on layouts.
Compute ops (Gemm, MatMul, Conv, LSTM, Relu, Add, BatchNormalization, Gather of an embedding
table) then read off the ids which IR tensor they consume, over which steps and in which channel
order, and emit IR ops; a channel arrangement that is not an existing tensor (a concat) becomes
a `select` op. Anything that is not causal and per-step (a Slice over time, a non-causal
padding, the use of a step other than the last) is rejected with the node and module named.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.numpy_helper

from export.ir import OP_KINDS, Graph, Op
from models.onnx import ExportError, check_whitelist, node_origin

_T_BITS, _C_BITS = 20, 20  # element id = tensor << 40 | step << 20 | channel


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class _Lowerer:
    """Walks the nodes once; `consts` holds constant values, `views` element-id arrays."""

    def __init__(self, model: onnx.ModelProto):
        self.graph = model.graph
        self.consts: dict[str, np.ndarray] = {i.name: onnx.numpy_helper.to_array(i) for i in self.graph.initializer}
        self.views: dict[str, np.ndarray] = {}
        self.names: list[str] = []
        self.widths: dict[str, int] = {}
        self.ops: list[Op] = []
        self.selects: dict[tuple, str] = {}
        self.counter: dict[str, int] = {}
        self.node: onnx.NodeProto | None = None
        self.window = 0

    # -- helpers -----------------------------------------------------------------------------
    def fail(self, msg: str) -> ExportError:
        where = (
            f" at node {self.node.name!r} ({self.node.op_type}) from module {node_origin(self.node)}"
            if self.node
            else ""
        )
        return ExportError(msg + where)

    def new_tensor(self, kind: str, width: int) -> tuple[int, str]:
        n = self.counter.get(kind, 0)
        self.counter[kind] = n + 1
        name = f"{kind}{n}"
        self.names.append(name)
        self.widths[name] = width
        return len(self.names) - 1, name

    def emit(self, kind: str, ins: list[str], width: int, params=None, attrs=None, src=None) -> tuple[int, str]:
        idx, name = self.new_tensor(kind if kind in OP_KINDS else "t", width)
        self.ops.append(Op(kind, name, ins, src or node_origin(self.node), params or {}, attrs or {}))
        return idx, name

    @staticmethod
    def enc(idx: int, t, c) -> np.ndarray:
        return (np.int64(idx) << (_T_BITS + _C_BITS)) | (np.asarray(t, np.int64) << _C_BITS) | np.asarray(c, np.int64)

    @staticmethod
    def dec(ids: np.ndarray):
        return ids >> (_T_BITS + _C_BITS), (ids >> _C_BITS) & ((1 << _T_BITS) - 1), ids & ((1 << _C_BITS) - 1)

    def const(self, name: str) -> np.ndarray | None:
        return self.consts.get(name) if name else None

    def view(self, name: str) -> np.ndarray:
        if name not in self.views:
            raise self.fail(f"input {name!r} must be a runtime tensor, not a constant")
        return self.views[name]

    def canon(self, ids: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
        """(IR tensor holding the view's channels, step of each element, channel of each element).

        The elements of each step must name the same channels in the same order; that channel
        list becomes the IR tensor (an existing one, or a new `select`)."""
        ten, t, c = self.dec(ids)
        steps = set(np.unique(t).tolist())
        if steps not in ({self.window - 1}, set(range(self.window))):
            raise self.fail(
                f"uses steps {sorted(steps)} of the window; streaming supports only the current "
                f"step or the whole window"
            )
        flat_t = t.reshape(-1)
        pattern = None
        rank = np.zeros(flat_t.shape, np.int64)
        for step in steps:
            pos = np.nonzero(flat_t == step)[0]
            pat = tuple(zip(ten.reshape(-1)[pos].tolist(), c.reshape(-1)[pos].tolist(), strict=False))
            if pattern is not None and pat != pattern:
                raise self.fail("channel layout differs between steps")
            pattern = pat
            rank[pos] = np.arange(len(pos))
        return self.materialize(pattern), t, rank.reshape(ids.shape)

    def materialize(self, pattern: tuple) -> str:
        first = pattern[0][0]
        if all(i == first for i, _ in pattern) and [c for _, c in pattern] == list(
            range(self.widths[self.names[first]])
        ):
            return self.names[first]
        if pattern not in self.selects:
            sources = [(self.names[i], c) for i, c in pattern]
            ins = list(dict.fromkeys(n for n, _ in sources))
            _, name = self.emit(
                "select",
                ins,
                len(pattern),
                attrs={"sources": sources},
                src=f"concat / channel layout for {node_origin(self.node)}",
            )
            self.selects[pattern] = name
        return self.selects[pattern]

    def check_axis(self, t, rank, time_axis: int, chan_axis: int):
        """Element steps must run along time_axis (0..L-1) and channels along chan_axis."""
        shape = t.shape
        ti = np.arange(shape[time_axis]).reshape([-1 if a == time_axis else 1 for a in range(len(shape))])
        ci = np.arange(shape[chan_axis]).reshape([-1 if a == chan_axis else 1 for a in range(len(shape))])
        if shape[time_axis] != self.window or not (t == ti).all() or not (rank == ci).all():
            raise self.fail(f"expected steps along axis {time_axis} and channels along axis {chan_axis}")

    # -- graph walk --------------------------------------------------------------------------
    def run(self) -> Graph:
        x_name, tok_name = self.inputs()
        for node in self.graph.node:
            self.node = node
            getattr(self, "op_" + node.op_type)(node, _attrs(node))
        self.node = None
        if len(self.graph.output) != 1:
            raise ExportError("the model must have exactly one output (logits)")
        out_ids = self.view(self.graph.output[0].name)
        if out_ids.ndim != 2 or out_ids.shape[0] != 1:
            raise ExportError(f"output must have shape (batch, n_out), got {list(out_ids.shape)}")
        out, t, rank = self.canon(out_ids)
        if set(t.reshape(-1).tolist()) != {self.window - 1}:
            raise ExportError("the output must depend on the last step only")
        g = Graph(self.n_num, self.window, self.vocab, x_name, tok_name, out, dict(self.widths), self.ops)
        return _finish(g)

    def inputs(self) -> tuple[str, str | None]:
        x_name = tok_name = None
        for inp in self.graph.input:
            dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
            elem = inp.type.tensor_type.elem_type
            if elem == onnx.TensorProto.FLOAT and len(dims) == 3 and dims[0] == 1 and min(dims) > 0:
                self.window, self.n_num = dims[1], dims[2]
                idx, x_name = self.new_tensor("x", dims[2])
                t, c = np.meshgrid(np.arange(dims[1]), np.arange(dims[2]), indexing="ij")
                self.views[inp.name] = self.enc(idx, t, c)[None]
            elif elem == onnx.TensorProto.INT64 and len(dims) == 2 and dims[0] == 1:
                idx, tok_name = self.new_tensor("tok", 1)
                self.views[inp.name] = self.enc(idx, np.arange(dims[1]), 0)[None]
            else:
                raise ExportError(
                    f"unsupported model input {inp.name!r}: expected float x (1, L, F) and "
                    f"optional int64 tokens (1, L) with static shapes"
                )
        if x_name is None:
            raise ExportError("the model has no float input x (1, L, F)")
        self.tok = tok_name
        self.vocab = 0
        if tok_name:
            tables = [n for n in self.graph.node if n.op_type == "Gather" and n.input[0] in self.consts]
            self.vocab = max((self.consts[n.input[0]].shape[0] for n in tables), default=0)
        return x_name, tok_name

    # -- layout ops: the same numpy op on constants and on id arrays -------------------------
    def layout(self, node, fn):
        src = node.input[0]
        if src in self.consts:
            self.consts[node.output[0]] = fn(self.consts[src])
        else:
            self.views[node.output[0]] = fn(self.view(src))

    def op_Constant(self, node, a):
        if "value" not in a:
            raise self.fail("only tensor-valued Constant nodes are supported")
        self.consts[node.output[0]] = onnx.numpy_helper.to_array(a["value"])

    def op_Identity(self, node, a):
        self.layout(node, lambda v: v)

    def op_Transpose(self, node, a):
        self.layout(node, lambda v: np.transpose(v, a.get("perm")))

    def op_Reshape(self, node, a):
        shape = [int(s) for s in self.const(node.input[1])]

        def fn(v):
            dims = [v.shape[i] if s == 0 and not a.get("allowzero", 0) else s for i, s in enumerate(shape)]
            return v.reshape(dims)

        self.layout(node, fn)

    def op_Flatten(self, node, a):
        def fn(v):
            ax = a.get("axis", 1) % v.ndim if a.get("axis", 1) else 0
            return v.reshape(int(np.prod(v.shape[:ax])), int(np.prod(v.shape[ax:])))

        self.layout(node, fn)

    def op_Squeeze(self, node, a):
        axes = self.const(node.input[1]) if len(node.input) > 1 else None
        self.layout(node, lambda v: np.squeeze(v, tuple(int(x) for x in axes) if axes is not None else None))

    def op_Unsqueeze(self, node, a):
        axes = sorted(
            int(x) % (self.rank_of(node.input[0]) + len(self.const(node.input[1]))) for x in self.const(node.input[1])
        )

        def fn(v):
            for ax in axes:
                v = np.expand_dims(v, ax)
            return v

        self.layout(node, fn)

    def rank_of(self, name: str) -> int:
        return (self.consts[name] if name in self.consts else self.view(name)).ndim

    def op_Slice(self, node, a):
        starts, ends = self.const(node.input[1]), self.const(node.input[2])
        nd = self.rank_of(node.input[0])
        axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else range(len(starts))
        steps = self.const(node.input[4]) if len(node.input) > 4 and node.input[4] else [1] * len(starts)
        index = [slice(None)] * nd
        for s, e, ax, st in zip(starts, ends, axes, steps, strict=False):
            index[int(ax) % nd] = slice(int(s), int(e), int(st))
        self.layout(node, lambda v: v[tuple(index)])

    def op_Concat(self, node, a):
        ins = node.input
        if all(i in self.consts for i in ins):
            self.consts[node.output[0]] = np.concatenate([self.consts[i] for i in ins], a["axis"])
        else:
            self.views[node.output[0]] = np.concatenate([self.view(i) for i in ins], a["axis"])

    def op_Gather(self, node, a):
        data, idx = node.input
        axis = a.get("axis", 0)
        if idx in self.consts:
            ind = self.consts[idx]
            self.layout(node, lambda v: np.take(v, ind, axis=axis))
            return
        table = self.const(data)
        if table is None or table.ndim != 2 or axis != 0:
            raise self.fail("Gather with runtime indices is supported only as an embedding lookup (table[tokens])")
        ten, t, _ = self.dec(self.view(idx))
        if any(self.names[i] != self.tok for i in np.unique(ten).tolist()):
            raise self.fail("embedding indices must be the token input")
        self.canon(self.view(idx))  # step checks
        i, _ = self.emit("embed", [self.tok], table.shape[1], params={"table": table.astype(np.float32)})
        self.views[node.output[0]] = self.enc(i, t[..., None], np.arange(table.shape[1]))

    # -- compute ops -------------------------------------------------------------------------
    def dense(self, ids: np.ndarray, w: np.ndarray, b: np.ndarray | None, out_name: str):
        """Linear map over the last axis of `ids` (w: (N, K)); handles the flattened window."""
        k = ids.shape[-1]
        rows = ids.reshape(-1, k)
        _, t, _ = self.dec(rows)
        if rows.shape[0] == 1 and len(set(t[0].tolist())) > 1:
            src = self.window_input(rows[0])
            row_t = np.full((1, 1), self.window - 1)
        else:
            row_t = t[:, :1]
            src, t2, rank = self.canon(ids)
            if not (rank == np.arange(k)).all():
                raise self.fail("each row must hold one step's channels in order")
        bias = np.zeros(w.shape[0], np.float32) if b is None else b
        i, _ = self.emit(
            "dense",
            [src],
            w.shape[0],
            params={"w": w.astype(np.float32), "b": bias.astype(np.float32)},
            attrs={"bias": b is not None},
        )
        self.views[out_name] = self.enc(
            i, np.broadcast_to(row_t, (rows.shape[0], w.shape[0])), np.arange(w.shape[0])
        ).reshape(ids.shape[:-1] + (w.shape[0],))

    def window_input(self, row: np.ndarray) -> str:
        """A single row spanning several steps: the flattened window [t-n+1 .. t] (MLP)."""
        ten, t, c = self.dec(row)
        steps = sorted(set(t.tolist()))
        n = len(steps)
        width = len(row) // n
        if steps != list(range(self.window - n, self.window)) or width * n != len(row):
            raise self.fail("a flattened window must cover consecutive steps ending at the current one")
        pats = [
            tuple(zip(ten[j * width : (j + 1) * width].tolist(), c[j * width : (j + 1) * width].tolist(), strict=False))
            for j in range(n)
        ]
        if any((t[j * width : (j + 1) * width] != steps[j]).any() or pats[j] != pats[0] for j in range(n)):
            raise self.fail("a flattened window must be step-major with the same channels at every step")
        src = self.materialize(pats[0])
        _, name = self.emit("window", [src], width * n, attrs={"length": n})
        return name

    def op_Gemm(self, node, a):
        if a.get("transA", 0):
            raise self.fail("Gemm with transA is not supported")
        w = self.const(node.input[1])
        if w is None:
            raise self.fail("Gemm weights must be constant")
        w = (w if a.get("transB", 0) else w.T) * a.get("alpha", 1.0)
        c = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        b = None if c is None else np.broadcast_to(c * a.get("beta", 1.0), (1, w.shape[0])).reshape(-1)
        self.dense(self.view(node.input[0]), w, b, node.output[0])

    def op_MatMul(self, node, a):
        w = self.const(node.input[1])
        if w is None or w.ndim != 2:
            raise self.fail("MatMul must multiply by a constant 2-D weight")
        self.dense(self.view(node.input[0]), w.T, None, node.output[0])

    def op_Conv(self, node, a):
        w = self.const(node.input[1])
        if w is None or w.ndim != 3:
            raise self.fail("only 1-D convolutions with constant weights are supported")
        k = w.shape[2]
        d = int(a.get("dilations", [1])[0])
        pads = list(a.get("pads", [0, 0]))
        if a.get("group", 1) != 1 or list(a.get("strides", [1])) != [1] or a.get("auto_pad", b"NOTSET") != b"NOTSET":
            raise self.fail("Conv must have group=1, stride 1 and explicit pads")
        if pads != [(k - 1) * d, 0]:
            raise self.fail(f"Conv padding {pads} is not causal (expected [{(k - 1) * d}, 0])")
        b = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0], np.float32)
        src, t, rank = self.canon(self.view(node.input[0]))
        self.check_axis(t, rank, time_axis=2, chan_axis=1)
        params = {"w": (w[:, :, 0] if k == 1 else w).astype(np.float32), "b": b.astype(np.float32)}
        if k == 1:
            i, _ = self.emit("dense", [src], w.shape[0], params=params, attrs={"bias": True})
        else:
            i, _ = self.emit("conv", [src], w.shape[0], params=params, attrs={"dilation": d})
        tt, cc = np.meshgrid(np.arange(self.window), np.arange(w.shape[0]))
        self.views[node.output[0]] = self.enc(i, tt, cc)[None]

    def op_BatchNormalization(self, node, a):
        if a.get("training_mode", 0):
            raise self.fail("BatchNormalization in training mode")
        scale, bias, mean, var = (self.const(n) for n in node.input[1:5])
        s = scale / np.sqrt(var + a.get("epsilon", 1e-5))
        src, t, rank = self.canon(self.view(node.input[0]))
        if not (rank == np.arange(rank.shape[1]).reshape([1, -1] + [1] * (rank.ndim - 2))).all():
            raise self.fail("BatchNormalization channels must be axis 1")
        i, _ = self.emit("affine", [src], len(s), params={"scale": s, "shift": bias - mean * s})
        self.views[node.output[0]] = self.enc(i, t, rank)

    def op_Relu(self, node, a):
        src, t, rank = self.canon(self.view(node.input[0]))
        i, _ = self.emit("relu", [src], self.widths[src])
        self.views[node.output[0]] = self.enc(i, t, rank)

    def op_Add(self, node, a):
        x, y = node.input
        if x in self.consts:
            x, y = y, x
        if y in self.consts:
            src, t, rank = self.canon(self.view(x))
            full = np.broadcast_to(self.consts[y], rank.shape)
            b = np.zeros(self.widths[src], np.float64)
            b[rank.reshape(-1)] = full.reshape(-1)
            if not np.array_equal(b[rank], full):
                raise self.fail("Add of a constant must add one value per channel (a bias)")
            i, _ = self.emit("bias", [src], len(b), params={"b": b})
            self.views[node.output[0]] = self.enc(i, t, rank)
            return
        sa, ta, ra = self.canon(self.view(x))
        sb, tb, rb = self.canon(self.view(y))
        if ta.shape != tb.shape or not (ta == tb).all() or not (ra == rb).all() or self.widths[sa] != self.widths[sb]:
            raise self.fail("Add operands must have the same shape and layout (no broadcasting)")
        i, _ = self.emit("add", [sa, sb], self.widths[sa])
        self.views[node.output[0]] = self.enc(i, ta, ra)

    def op_LSTM(self, node, a):
        ins = list(node.input) + [""] * (8 - len(node.input))
        w, r = self.const(ins[1]), self.const(ins[2])
        hid = int(a["hidden_size"])
        if a.get("direction", b"forward") != b"forward" or w is None or r is None or w.shape[0] != 1:
            raise self.fail("only unidirectional forward LSTM with constant weights is supported")
        if a.get("clip") is not None or a.get("input_forget", 0) or ins[4] or ins[7]:
            raise self.fail("LSTM clip, input_forget, sequence_lens and peepholes are not supported")
        if a.get("activations") not in (None, [b"Sigmoid", b"Tanh", b"Tanh"]):
            raise self.fail("LSTM must use the default activations (Sigmoid, Tanh, Tanh)")
        for init in (ins[5], ins[6]):
            v = self.const(init)
            if init and (v is None or np.any(v != 0)):
                raise self.fail("LSTM initial states must be zero")
        if len(node.output) > 2 and node.output[2] and self.used(node.output[2]):
            raise self.fail("the LSTM cell state output Y_c is not supported")
        b = self.const(ins[3])
        b = np.zeros(8 * hid, np.float32) if b is None else b[0]
        layout = a.get("layout", 0)
        src, t, rank = self.canon(self.view(ins[0]))
        self.check_axis(t, rank, time_axis=layout, chan_axis=2)
        i, _ = self.emit(
            "lstm",
            [src],
            hid,
            params={
                "w": w[0].astype(np.float32),
                "r": r[0].astype(np.float32),
                "b": (b[: 4 * hid] + b[4 * hid :]).astype(np.float32),
            },
        )
        tt, cc = np.meshgrid(np.arange(self.window), np.arange(hid), indexing="ij")
        y = self.enc(i, tt, cc)  # (L, H)
        self.views[node.output[0]] = y[:, None, None, :] if layout == 0 else y[None, :, None, :]
        if len(node.output) > 1 and node.output[1]:
            self.views[node.output[1]] = y[-1][None, None, :]

    def used(self, name: str) -> bool:
        return any(name in n.input for n in self.graph.node) or any(o.name == name for o in self.graph.output)

    def __getattr__(self, item):
        if item.startswith("op_"):
            raise self.fail(f"ONNX op {item[3:]} has no lowering")
        raise AttributeError(item)


def _finish(g: Graph) -> Graph:
    """Fold bias/BatchNorm/ReLU into their producers, drop dead ops, check the result."""
    ops = list(g.ops)
    i = 0
    while i < len(ops):
        op = ops[i]
        if op.kind in ("bias", "affine", "relu"):
            prod = next((p for p in ops if p.out == op.ins[0]), None)
            single = prod is not None and sum(op.ins[0] in o.ins for o in ops) == 1 and prod.out != g.output
            foldable = single and (
                prod.kind in ("dense", "conv")
                and not prod.attrs.get("relu")
                or op.kind == "relu"
                and prod.kind == "add"
                and not prod.attrs.get("relu")
            )
            if foldable:
                if op.kind == "bias":
                    prod.params["b"] = (prod.params["b"] + op.params["b"]).astype(np.float32)
                elif op.kind == "affine":
                    s = op.params["scale"]
                    prod.params["w"] = (
                        prod.params["w"] * s.reshape((-1,) + (1,) * (prod.params["w"].ndim - 1))
                    ).astype(np.float32)
                    prod.params["b"] = (prod.params["b"] * s + op.params["shift"]).astype(np.float32)
                else:
                    prod.attrs["relu"] = True
                _rename(ops, g, op.out, prod.out)
                ops.pop(i)
                continue
            if op.kind != "relu":
                what = "Add of a constant" if op.kind == "bias" else "BatchNormalization"
                raise ExportError(f"{what} in {op.src} does not follow a Linear/Conv it can be folded into")
        i += 1
    live = {g.output}
    kept = []
    for op in reversed(ops):
        if op.out in live:
            kept.append(op)
            live.update(op.ins)
    kept.reverse()
    for op in kept:
        op.attrs.pop("bias", None)
        assert op.kind in OP_KINDS, op.kind
    tensors = {n: w for n, w in g.tensors.items() if n in live or n == g.x}
    return Graph(g.n_num, g.window, g.vocab, g.x, g.tokens if g.tokens in live else None, g.output, tensors, kept)


def _rename(ops: list[Op], g: Graph, old: str, new: str) -> None:
    for o in ops:
        o.ins = [new if n == old else n for n in o.ins]
        if o.kind == "select":
            o.attrs["sources"] = [(new if n == old else n, c) for n, c in o.attrs["sources"]]
    if g.output == old:
        g.output = new


def lower(model: onnx.ModelProto) -> Graph:
    """Translate an exported (inlined, whitelisted) ONNX model into the streaming IR."""
    check_whitelist(model)
    return _Lowerer(model).run()
