"""Fine-tuning: adapting a trained model after pre-training.

- :mod:`~genai_helpers.finetuning.alignment`  SFT, reward model, PPO and DPO losses (chapter 06;
  old path ``genai_helpers.alignment``)
- :mod:`~genai_helpers.finetuning.lora`       LoRA layers, injection, merge/unmerge, adapter files,
  QLoRA on int4 weights (chapter 14, tested against Hugging Face ``peft``; old path ``genai_helpers.lora``)
"""
__all__ = ["alignment", "lora"]
