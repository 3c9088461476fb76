"""lora-forecast: compute-budgeted LoRA fine-tuning of small LLMs as LLMTIME forecasters."""

__version__ = "0.1.0"
