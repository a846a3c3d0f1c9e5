"""Linear layers through oneDNN while scoring (backends/onednn_linear.py).

Inside `active()` each plain float32 linear computes through oneDNN's kernel with its packed
weight, giving the MKL result to float rounding; outside, every module is its own class's again.
Subclasses of nn.Linear (LoRA, quantised layers) and non-float32 layers are left alone. The
choice is forced by ITERALIGN_ONEDNN_LINEAR; otherwise it is timed once per layer shape. On the
real model, test_eval_scoring.py holds the packed scores within 1e-3 of one forward pass per
pair, whichever kernel the timing picked.
"""
from __future__ import annotations

import pytest
import torch

from iteralign.backends import onednn_linear
from iteralign.backends.onednn_linear import OneDNNLinears, plain_linears


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.up = torch.nn.Linear(64, 256, bias=False)
        self.down = torch.nn.Linear(256, 64)
        self.head = torch.nn.Linear(64, 1000, bias=False)
        self.half = torch.nn.Linear(64, 64).to(torch.bfloat16)

    def get_output_embeddings(self):
        return self.head

    def forward(self, x):
        return self.head(self.down(torch.relu(self.up(x))))


class Special(torch.nn.Linear):
    pass


@pytest.mark.skipif(not onednn_linear.available(), reason="this torch has no oneDNN")
def test_linears_route_through_onednn_inside_and_are_restored_after(monkeypatch):
    monkeypatch.setenv("ITERALIGN_ONEDNN_LINEAR", "1")
    model = Tiny().eval()
    model.special = Special(64, 64)
    assert plain_linears(model) == [model.up, model.down, model.head]  # not bf16, not a subclass
    x = torch.randn(3, 7, 64)
    with torch.inference_mode():
        reference = model(x)
        switch = OneDNNLinears(model)
        assert switch.enabled
        calls = []
        real = torch.ops.mkldnn._linear_pointwise
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or real(*a),
                            raising=False)
        with switch.active():
            routed = model(x)
        assert len(calls) == 3  # up, down, head
        assert torch.allclose(routed, reference, atol=1e-4, rtol=1e-4)
        assert all("forward" not in m.__dict__ for m in model.modules())
        assert torch.equal(model(x), reference)


def test_forced_off_leaves_every_layer_alone(monkeypatch):
    monkeypatch.setenv("ITERALIGN_ONEDNN_LINEAR", "0")
    model = Tiny().eval()
    switch = OneDNNLinears(model)
    assert not switch.enabled
    with switch.active():
        assert all("forward" not in m.__dict__ for m in model.modules())


@pytest.mark.skipif(not onednn_linear.available(), reason="this torch has no oneDNN")
def test_the_choice_is_timed_once_per_layer_shape_without_the_head(monkeypatch):
    monkeypatch.delenv("ITERALIGN_ONEDNN_LINEAR", raising=False)
    monkeypatch.setattr(onednn_linear, "_DECISIONS", {})
    OneDNNLinears(Tiny())
    OneDNNLinears(Tiny())
    assert list(onednn_linear._DECISIONS) == [(64, 256, True)]  # the widest linear but the head, timed once


@pytest.mark.skipif(not onednn_linear.available(), reason="this torch has no oneDNN")
def test_a_model_too_large_to_copy_keeps_its_weights_as_they_are(monkeypatch):
    monkeypatch.setenv("ITERALIGN_ONEDNN_LINEAR", "1")
    model = Tiny().eval()
    assert onednn_linear.fits_twice(plain_linears(model))
    assert not onednn_linear.fits_twice(plain_linears(model), share=1e-12)
    monkeypatch.setattr(onednn_linear, "fits_twice", lambda linears: False)
    switch = OneDNNLinears(model)
    x = torch.randn(5, 64)
    with torch.inference_mode():
        reference = model(x)
        with switch.active():
            assert torch.allclose(model(x), reference, atol=1e-4, rtol=1e-4)
    # no second copy: the weights oneDNN reads are the layers' own storage
    assert not switch.pack
    assert all(switch._packed[id(m)].data_ptr() == m.weight.data_ptr() for m in plain_linears(model))
