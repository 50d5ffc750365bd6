#!/usr/bin/env python3
"""A random Llama checkpoint for the depth benchmarks: hidden 256, 8 heads (4 KV),
intermediate 768, vocab 512 (stories260K's tokenizer, copied in), untied head.

  make_synthetic_llama.py OUT_DIR LAYERS STORIES260K_DIR
"""
import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForCausalLM

out, layers, stories = sys.argv[1], int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
cfg = LlamaConfig(hidden_size=256, num_hidden_layers=layers, num_attention_heads=8,
                  num_key_value_heads=4, intermediate_size=768, vocab_size=512,
                  max_position_embeddings=1024, tie_word_embeddings=False)
LlamaForCausalLM(cfg).save_pretrained(out)
shutil.copy(stories + "/tokenizer.json", out)
