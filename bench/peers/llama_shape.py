"""The Llama shape the peer scripts share (train_anchor.py, floor_anchor.py): its command-line arguments and the
Hugging Face model built from them. Imports torch and transformers only when a model is built, so train_anchor.py
can put carried packages on sys.path first."""


def add_shape_args(p, steps, warmup):
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=22)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv_heads", type=int, default=4)
    p.add_argument("--ffn", type=int, default=5632)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--mb", type=int, default=4)
    p.add_argument("--steps", type=int, default=steps)
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--ckpt", action="store_true", help="activation checkpointing")


def make_llama(a, device, layers=None):
    """LlamaForCausalLM of the shape in `a` (`layers` overrides its depth), SDPA attention, untied embeddings, built
    on `device`, with Hugging Face's gradient checkpointing when a.ckpt."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=a.hidden, num_hidden_layers=a.layers if layers is None else layers,
                      num_attention_heads=a.heads, num_key_value_heads=a.kv_heads, intermediate_size=a.ffn,
                      vocab_size=a.vocab, max_position_embeddings=a.seq, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    if a.ckpt:
        model.gradient_checkpointing_enable()
    return model
