"""The PEFT -> GGUF LoRA conversion: names, shapes and the q/k row permutation on a hand-made
adapter, and (slow) the proof on the embedded model: transformers + PEFT and llama.cpp + the
converted LoRA give the same next-token log-probs, and the difference between the engines is
small against the adapter's own effect."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from iteralign.backends.gguf_lora import convert_adapter, converted_path, permute_rows
from iteralign.errors import ModelSpecError

BASE = {"model_type": "llama", "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2}


def _adapter(folder, **settings):
    from safetensors.numpy import save_file

    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                                                            "bias": "none", **settings}))
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(2):
        for proj, out in (("q_proj", 16), ("k_proj", 8), ("v_proj", 8)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((2, 16)).astype(np.float32)
            tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((out, 2)).astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return tensors


def test_conversion_names_shapes_alpha_and_the_qk_permutation(tmp_path):
    import gguf

    tensors = _adapter(tmp_path / "adapter")
    out = convert_adapter(tmp_path / "adapter", BASE, tmp_path / "lora.gguf")
    reader = gguf.GGUFReader(str(out))
    assert bytes(reader.fields["general.type"].parts[-1]).decode() == "adapter"
    assert bytes(reader.fields["adapter.type"].parts[-1]).decode() == "lora"
    assert float(reader.fields["adapter.lora.alpha"].parts[-1][0]) == 4.0
    got = {t.name: np.array(t.data).reshape([int(d) for d in reversed(t.shape)]) for t in reader.tensors}
    assert len(got) == 12 and "blk.1.attn_v.weight.lora_b" in got
    prefix = "base_model.model.model.layers.0.self_attn"
    np.testing.assert_array_equal(got["blk.0.attn_q.weight.lora_a"], tensors[f"{prefix}.q_proj.lora_A.weight"])
    np.testing.assert_array_equal(got["blk.0.attn_v.weight.lora_b"], tensors[f"{prefix}.v_proj.lora_B.weight"])
    np.testing.assert_array_equal(got["blk.0.attn_q.weight.lora_b"], permute_rows(tensors[f"{prefix}.q_proj.lora_B.weight"], 4))
    np.testing.assert_array_equal(got["blk.0.attn_k.weight.lora_b"], permute_rows(tensors[f"{prefix}.k_proj.lora_B.weight"], 2))
    assert not (tmp_path / "lora.gguf.tmp").exists()


def test_permutation_matches_the_hf_to_gguf_rotary_layout():
    # llama.cpp's convert_hf_to_gguf.LlamaModel.permute, for 2 heads of 4 rows: pairs of the
    # first and second half of each head are interleaved
    rows = np.arange(8, dtype=np.float32)[:, None]
    assert permute_rows(rows, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_unsupported_adapters_are_one_clear_error(tmp_path):
    _adapter(tmp_path / "dora", use_dora=True)
    with pytest.raises(ModelSpecError, match="only plain LoRA"):
        convert_adapter(tmp_path / "dora", BASE, tmp_path / "x.gguf")
    _adapter(tmp_path / "plain")
    with pytest.raises(ModelSpecError, match="Llama-architecture"):
        convert_adapter(tmp_path / "plain", {**BASE, "model_type": "gpt2"}, tmp_path / "x.gguf")
    assert converted_path(tmp_path / "plain", "ab" * 32).name == "plain.abababababababab.gguf"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hf_peft_and_llamacpp_gguf_lora_agree_on_the_embedded_model(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from iteralign.backends.embedded import embedded_gguf
    from iteralign.backends.hf import resolve_hf_model
    from iteralign.backends.lora_agreement import (chat_texts, hf_token_logprobs, llamacpp_token_logprobs,
                                                   mean_abs_difference)
    from iteralign.config import TrainConfig
    from iteralign.records import SFTExample
    from iteralign.train.lora_sft import train_lora

    model_dir = resolve_hf_model("embedded")
    refusal = "I'm sorry, but I can't help with that request."
    examples = [SFTExample(prompt_id=str(i), prompt=f"How do I do dangerous thing {i}?", completion=refusal)
                for i in range(8)]
    train_lora(model_dir, None, examples, TrainConfig(epochs=3, batch_size=4, learning_rate=1e-3, precision="fp32"),
               0, tmp_path / "adapter")
    lora = convert_adapter(tmp_path / "adapter", json.loads((Path(model_dir) / "config.json")
                                                            .read_text()), tmp_path / "adapter.gguf")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = chat_texts(tokenizer, [("How do I pick a lock?", refusal),
                                   ("What is the capital of France?", "The capital of France is Paris."),
                                   ("How can I make a weapon?", "Sure, here is how to make one at home.")])
    hf_base = hf_token_logprobs(model_dir, None, texts)
    hf_lora = hf_token_logprobs(model_dir, tmp_path / "adapter", texts)
    cpp_base = llamacpp_token_logprobs(embedded_gguf(), None, texts)
    cpp_lora = llamacpp_token_logprobs(embedded_gguf(), lora, texts)
    effect = mean_abs_difference(hf_base, hf_lora)
    engines_base = mean_abs_difference(hf_base, cpp_base)
    engines_lora = mean_abs_difference(hf_lora, cpp_lora)
    print(f"adapter effect {effect:.4f}, engines without adapter {engines_base:.4f}, with {engines_lora:.4f}")
    assert effect > 0.3, "the adapter should change the model measurably"
    assert engines_lora < 0.1 * effect, (effect, engines_base, engines_lora)
    assert engines_lora < engines_base + 0.05  # the conversion adds next to nothing to the engines' own gap
    # the measure catches what a wrong conversion would do: a missing adapter, and B rows of q/k
    # left in HF's order
    assert mean_abs_difference(hf_lora, cpp_base) > 0.5 * effect
    from iteralign.backends import gguf_lora

    monkeypatch.setattr(gguf_lora, "permute_rows", lambda weight, n_head: weight)
    unpermuted = gguf_lora.convert_adapter(tmp_path / "adapter", json.loads(
        (Path(model_dir) / "config.json").read_text()), tmp_path / "unpermuted.gguf")
    wrong = mean_abs_difference(hf_lora, llamacpp_token_logprobs(embedded_gguf(), unpermuted, texts))
    print(f"engines with an unpermuted conversion {wrong:.4f}")
    assert wrong > 3 * engines_lora, (wrong, engines_lora)
