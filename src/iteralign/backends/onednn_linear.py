"""Linear layers through oneDNN while the packed scorer runs, where that measures faster.

In: a transformers model on the CPU in float32.
Out: a context manager under which its plain `nn.Linear` layers multiply through oneDNN
(`torch.ops.mkldnn._linear_pointwise`, the kernel PyTorch's own compiler uses for CPU linears)
with their weights reordered once into oneDNN's blocked layout; on exit every layer is as before.

Why: PyTorch's eager float32 linear calls MKL's sgemm, and MKL runs its AVX2 kernels on AMD
CPUs even where they have AVX-512. oneDNN picks its kernel by the instructions the CPU has.
Measured on a 2-core AMD EPYC with AVX-512 (SmolLM2-135M's shapes, 2 threads): decoder linears
192-200 GFLOP/s through MKL against 221-226 through oneDNN with packed weights; the LM head and
its logsumexp in slices of 128 positions 2.28 s against 1.22 s per 4,096 positions
(benchmarks/linear_kernels.py; docs/benchmarks.md, "oneDNN linears"). On a
CPU where MKL is as fast, the switch would buy nothing, so it is decided by measurement: one
timing of the model's widest linear each way, once per process and model shape
(`ITERALIGN_ONEDNN_LINEAR=0` or `1` skips the timing and forces the choice).

The reordered weights are a second copy of the linear weights (for SmolLM2-135M, 540 MB), held as
long as the scorer keeps them (the eval's lifetime); where that copy would take over a quarter
of the machine's memory, the weights are used as they are (oneDNN then reorders them per call:
decoder linears 200-212 GFLOP/s on the host above). Only the summation order of each dot
product differs from MKL's, so scores move at float rounding (test_eval_scoring.py holds both
kernels within 1e-3 of one forward pass per pair; the full evaluation's predictions do not
change). benchmarks/linear_kernels.py measures the kernels on any machine.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)

_DECISIONS: dict[tuple[int, int], bool] = {}  # (in, out) features of the widest linear -> use oneDNN


def plain_linears(model) -> list:
    """The model's float32 CPU `nn.Linear` layers (not subclasses: LoRA or quantised layers
    compute something else)."""
    import torch

    return [m for m in model.modules() if type(m) is torch.nn.Linear and m.weight.dtype == torch.float32
            and m.weight.device.type == "cpu"]


def available() -> bool:
    import torch

    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def onednn_is_faster(linears: list, pack: bool = True, rows: int = 1024, repeats: int = 3) -> bool:
    """Time the widest linear on `rows` random inputs through MKL and through oneDNN (with its
    weight packed, or as it is). The caller leaves the LM head out: its timing alone would take
    seconds."""
    if not linears or not available():
        return False
    forced = os.environ.get("ITERALIGN_ONEDNN_LINEAR")
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    widest = max(linears, key=lambda m: m.weight.numel())
    key = (widest.in_features, widest.out_features, pack)
    if key not in _DECISIONS:
        x = torch.randn(rows, widest.in_features, generator=torch.Generator().manual_seed(0))
        weight = widest.weight.detach()
        if pack:
            weight = torch.ops.mkldnn._reorder_linear_weight(weight)
        with torch.inference_mode():
            mkl = best_time(lambda: torch.nn.functional.linear(x, widest.weight), repeats)
            onednn = best_time(lambda: torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], ""), repeats)
        _DECISIONS[key] = onednn < 0.95 * mkl
        log.info("linear %s: MKL %.1f ms, oneDNN %.1f ms -> %s", key[:2], 1e3 * mkl, 1e3 * onednn,
                 "oneDNN" if _DECISIONS[key] else "MKL")
    return _DECISIONS[key]


def fits_twice(linears: list, share: float = 0.25) -> bool:
    """Whether a packed copy of these weights takes under `share` of the machine's memory."""
    size = sum(m.weight.numel() * m.weight.element_size() for m in linears)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf: do not risk a second copy
        return False
    return size < share * memory


def best_time(step, repeats: int) -> float:
    """Seconds of the fastest of `repeats` calls of step(), after one warm-up call."""
    step()  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


class OneDNNLinears:
    """Packs a model's plain linears once; `active()` routes them through oneDNN."""

    def __init__(self, model):
        self.linears = plain_linears(model)
        # a large model keeps its weights as they are (oneDNN reorders them on each call, still
        # faster than MKL where it pays at all) rather than holding a second copy
        self.pack = fits_twice(self.linears)
        head = model.get_output_embeddings()
        self.enabled = onednn_is_faster([m for m in self.linears if m is not head], self.pack)
        self._packed: dict[int, object] = {}

    @contextmanager
    def active(self):
        if not self.enabled:
            yield
            return
        import torch

        linear = torch.ops.mkldnn._linear_pointwise
        for module in self.linears:
            if id(module) not in self._packed:
                weight = module.weight.detach()
                self._packed[id(module)] = torch.ops.mkldnn._reorder_linear_weight(weight) if self.pack else weight
            weight, bias = self._packed[id(module)], module.bias

            def forward(x, weight=weight, bias=bias):
                return linear(x, weight, bias, "none", [], "")

            module.forward = forward  # an instance attribute: shadows nn.Linear.forward until deleted
        try:
            yield
        finally:
            for module in self.linears:
                del module.forward
