"""Model size and arithmetic per decision, counted from the modules themselves.

MACs are counted analytically for the layers that do multiply-accumulates, on one decision's
input (batch 1, the full training window; a sequence model therefore pays for every step of its
window): Linear = in x out per output vector, Conv1d = (in/groups) x kernel per output element,
LSTM = 4 x hidden x (input + hidden) per step and layer, Embedding = 0 (a table lookup).
Element-wise work (activations, BatchNorm, which export folds into the convolution) is not
counted. Forward hooks only supply the shapes each layer actually sees.

Two counts exist and every report names which it prints (PER_STEP, per_decision(W), RELATION):
"MACs per decision (window W)" is this module's, what evaluate.py and train.py report and the
winner's budget uses; "MACs per step" is the exported integer model's (export/quantize.py,
QModel.macs), what the kernel pays per event with state carried from step to step.
"""

from __future__ import annotations

import torch
from torch import nn

PER_STEP = "MACs per step"
RELATION = (
    "MACs per decision (window W) count one forward pass of the float model over a whole W-step "
    "window (evaluate.py, train.py); MACs per step count one new event through the exported integer "
    "model, which carries its state from step to step (export, the kernel module). An MLP reads the "
    "flattened window either way, so the two are equal; a TCN or an LSTM computes only the newest step "
    "when streaming, so a decision costs about W x its MACs per step"
)


def per_decision(window: int | None) -> str:
    """The name of the float model's count: `MACs per decision (window 16)`."""
    return f"MACs per decision (window {window if window is not None else 'W'})"


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _linear(m: nn.Linear, inp, out) -> int:
    return m.in_features * out.numel()


def _conv1d(m: nn.Conv1d, inp, out) -> int:
    return (m.in_channels // m.groups) * m.kernel_size[0] * out.numel()


def _lstm(m: nn.LSTM, inp, out) -> int:
    x = inp[0]
    steps = x.shape[0 if not m.batch_first else 1] if x.dim() == 3 else x.shape[0]
    batch = x.shape[1 if not m.batch_first else 0] if x.dim() == 3 else 1
    d = 2 if m.bidirectional else 1
    total = 0
    for layer in range(m.num_layers):
        width = m.input_size if layer == 0 else m.hidden_size * d
        total += 4 * m.hidden_size * (width + m.hidden_size) * d
    return total * steps * batch


COUNTERS = {nn.Linear: _linear, nn.Conv1d: _conv1d, nn.LSTM: _lstm, nn.Embedding: lambda m, i, o: 0}


@torch.inference_mode()
def macs_per_decision(net: nn.Module, x: torch.Tensor, tokens: torch.Tensor | None) -> int:
    """MACs of one forward pass on a batch-1 window (x (1, L, F), tokens (1, L) | None)."""
    total = [0]
    hooks = []
    for m in net.modules():
        fn = next((f for cls, f in COUNTERS.items() if isinstance(m, cls)), None)
        if fn is not None:
            hooks.append(
                m.register_forward_hook(
                    lambda mod, i, o, fn=fn: total.__setitem__(
                        0, total[0] + fn(mod, i, o if torch.is_tensor(o) else o[0])
                    )
                )
            )
    try:
        net.eval()(x[:1], None if tokens is None else tokens[:1])
    finally:
        for h in hooks:
            h.remove()
    return total[0]
