"""Model building: the real Qwen2.5 tokenizer, HF causal LMs, PEFT LoRA and the numeric head."""
