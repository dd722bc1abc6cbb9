"""Batched greedy generation on a tiny random Llama: padding, order, budget, stop tokens, and
plain, LoRA-wrapped and nf4-quantized models.

The model is tiny-llama's shape (2 layers, 64 dims, the SmolLM2 tokenizer) with untied input and
output embeddings: tiny-llama itself ties them, and its random weights then mostly echo the last
prompt token, which would let a broken attention mask go unnoticed. Models compute in fp32 here:
in bf16 a random model's logits often tie to the last bit, and the few-ulp differences that
padding makes in attention can then flip the argmax.
"""

from __future__ import annotations


import pytest
import torch

from harness.trial.generation import GenerationScore, generate, generate_ids, score_generations
from harness.trial.models import TINY_LLAMA, load_base_model, load_tokenizer

pytestmark = pytest.mark.integration  # loads tiny Llama models

TEXTS = ["Hi", "What is the capital of France? Answer in one word, please.", "A b c",
         "The quick brown fox jumps over the lazy dog and then", "Name a colour."]


@pytest.fixture(scope="module", autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint: str):
    return load_tokenizer(tiny_checkpoint)


@pytest.fixture(scope="module")
def checkpoint(tokenizer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A seeded random Llama of tiny-llama's shape with untied embeddings, saved as a checkpoint."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **{**TINY_LLAMA, "tie_word_embeddings": False})
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("untied-tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def load(path: str, mode: str):
    """The base model through harness's own loader, computing in fp32, on one thread."""
    model = load_base_model(path, mode, "cpu")
    # load_base_model uses every core; on 2 shared cores a tiny model generates ~50x faster on one.
    torch.set_num_threads(1)
    if mode == "none":
        return model.float()
    for module in model.modules():
        if hasattr(module, "compute_dtype"):  # bitsandbytes Linear4bit: dequantize into fp32
            module.compute_dtype = torch.float32
    return model


@pytest.fixture(scope="module")
def model(checkpoint: str):
    return load(checkpoint, "none")


@pytest.fixture(scope="module")
def prompts(tokenizer) -> list[list[int]]:
    ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in TEXTS]
    assert len({len(p) for p in ids}) == len(ids)  # all lengths differ: every batch needs padding
    return ids


def one_by_one(model, tokenizer, prompts: list[list[int]], **kwargs) -> list[list[int]]:
    return [generate_ids(model, tokenizer, [p], batch_size=1, device="cpu", **kwargs)[0] for p in prompts]


def test_left_padded_batch_equals_each_prompt_alone_in_input_order(model, tokenizer, prompts) -> None:
    alone = one_by_one(model, tokenizer, prompts, max_new_tokens=8, stop_ids=[])
    assert len({tuple(row) for row in alone}) > 1  # different prompts, different continuations
    for batch_size in (2, 5):  # prompts come shortest-first in neither order, so sorting reorders them
        assert generate_ids(model, tokenizer, prompts, max_new_tokens=8, batch_size=batch_size, device="cpu",
                            stop_ids=[]) == alone
    texts = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=5, device="cpu", stop_ids=[])
    assert texts == [tokenizer.decode(row, skip_special_tokens=True).strip() for row in alone]


def greedy_loop(model, prompt: list[int], steps: int) -> list[int]:
    """Reference greedy decoding: one unpadded sequence, full forward pass per token, no cache."""
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        for _ in range(steps):
            next_id = model(input_ids=ids, use_cache=False).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return ids[0, len(prompt):].tolist()


def test_matches_a_plain_greedy_loop_with_pad_tokens_inside_a_prompt(model, tokenizer, prompts) -> None:
    # Chat prompts contain <|im_end|>, which is also the pad token here: the attention mask must
    # come from the padding we add, not from where the pad id occurs.
    pad = tokenizer.pad_token_id
    inner = prompts[2] + [pad] + prompts[0]
    batch = [prompts[3], inner, prompts[1]]  # longer prompts around it: `inner` is left-padded
    got = generate_ids(model, tokenizer, batch, max_new_tokens=5, batch_size=3, device="cpu", stop_ids=[])
    assert got[1] == greedy_loop(model, inner, 5)
    assert got[0] == greedy_loop(model, prompts[3], 5)


def test_max_new_tokens_and_stop_ids(model, tokenizer, prompts) -> None:
    full = generate_ids(model, tokenizer, prompts, max_new_tokens=6, batch_size=5, device="cpu", stop_ids=[])
    assert [len(row) for row in full] == [6] * len(prompts)
    # default stop: the EOS token, so never longer than the budget
    assert all(len(row) <= 3 for row in generate_ids(model, tokenizer, prompts, max_new_tokens=3, batch_size=5,
                                                     device="cpu"))
    # stopping on a token the model produces cuts the row before that token's first occurrence
    stop = full[0][2]
    cut = generate_ids(model, tokenizer, prompts, max_new_tokens=6, batch_size=5, device="cpu", stop_ids=[stop])
    assert cut == [row[:row.index(stop)] if stop in row else row for row in full]
    assert len(cut[0]) <= 2


def test_generation_restores_use_cache_and_training_mode(model, tokenizer, prompts) -> None:
    assert model.config.use_cache is False  # set for training by load_base_model
    model.train()
    try:
        generate(model, tokenizer, prompts[:2], max_new_tokens=2, batch_size=2, device="cpu")
        assert model.config.use_cache is False
        assert model.training
    finally:
        model.eval()


def test_bad_arguments(model, tokenizer) -> None:
    assert generate(model, tokenizer, [], max_new_tokens=2, batch_size=2, device="cpu") == []
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(model, tokenizer, [[1, 2], []], max_new_tokens=2, batch_size=2, device="cpu")
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, tokenizer, [[1, 2]], max_new_tokens=0, batch_size=2, device="cpu")


def test_score_generations(model, tokenizer, prompts) -> None:
    expected = generate(model, tokenizer, prompts, max_new_tokens=4, batch_size=2, device="cpu", stop_ids=[])
    references = expected[:-1] + ["something else entirely"]
    result = score_generations(model, tokenizer, prompts, references, ["exact_match", "token_f1"],
                               max_new_tokens=4, batch_size=3, device="cpu", n_samples=2, stop_ids=[])
    assert isinstance(result, GenerationScore)
    n = len(prompts)
    assert result.metrics["exact_match"] == pytest.approx((n - 1) / n)  # all but the last match
    assert set(result.metrics) == {"exact_match", "token_f1"}
    assert result.samples == [{"prompt": TEXTS[i], "prediction": expected[i], "reference": references[i]}
                              for i in range(2)]
    assert result.new_tokens == 4 * n and result.seconds > 0


def test_peft_lora_model(checkpoint: str, tokenizer, prompts) -> None:
    from peft import LoraConfig, get_peft_model

    base = load(checkpoint, "none")
    before = generate_ids(base, tokenizer, prompts, max_new_tokens=5, batch_size=5, device="cpu", stop_ids=[])
    # A fresh LoRA adapter starts at B = 0: the wrapped model must generate exactly what the base did.
    wrapped = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    assert generate_ids(wrapped, tokenizer, prompts, max_new_tokens=5, batch_size=5, device="cpu",
                        stop_ids=[]) == before
    # A non-zero adapter changes the output, batched still equal to alone.
    torch.manual_seed(0)
    changed = get_peft_model(load(checkpoint, "none"),
                             LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                        init_lora_weights=False))
    batched = generate_ids(changed, tokenizer, prompts, max_new_tokens=5, batch_size=5, device="cpu", stop_ids=[])
    assert batched != before
    assert batched == one_by_one(changed, tokenizer, prompts, max_new_tokens=5, stop_ids=[])
    assert changed.config.use_cache is False
    # peft's forward does not name logits_to_keep, so generate would score every prompt position: it is asked
    # for the last one, which changes no token (a plain model asks for it itself).
    from harness.trial import generation

    assert generation._last_logits_only(changed) == {"logits_to_keep": 1}
    assert generation._last_logits_only(base) == {}
    full = generation.__dict__["_last_logits_only"]
    try:
        generation._last_logits_only = lambda model: {}
        assert generate_ids(changed, tokenizer, prompts, max_new_tokens=5, batch_size=5, device="cpu",
                            stop_ids=[]) == batched
    finally:
        generation._last_logits_only = full


def test_nf4_quantized_model(checkpoint: str, tokenizer, prompts) -> None:
    pytest.importorskip("bitsandbytes")
    model = load(checkpoint, "nf4")
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    batched = generate_ids(model, tokenizer, prompts, max_new_tokens=5, batch_size=5, device="cpu", stop_ids=[])
    assert [len(row) for row in batched] == [5] * len(prompts)
    assert batched == one_by_one(model, tokenizer, prompts, max_new_tokens=5, stop_ids=[])
    assert model.config.use_cache is False


def test_trials_generate_in_batches_of_generate_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The final evaluation's answers are generated `eval.generate_batch_size` prompts at a time, not in eval
    loss batches."""
    from types import SimpleNamespace

    import harness.trial.generation as generation
    from harness.config.evaluation import EvalSpec
    from harness.config.trial import TrialConfig
    from harness.trial.run import score_task

    seen: list[int] = []
    monkeypatch.setattr(generation, "score_generations", lambda *a, batch_size, **k: seen.append(batch_size))
    data = SimpleNamespace(max_new_tokens=8, metrics=("rouge_l",), tokenizer=None,
                           tokenized=SimpleNamespace(eval_prompts=[[1]] * 40, eval_references=["a"] * 40))
    for spec, expected in ((EvalSpec(batch_size=4), 16), (EvalSpec(batch_size=4, generate_batch_size=5), 5)):
        score_task(None, data, TrialConfig(eval=spec), "cpu")
        assert seen.pop() == expected
