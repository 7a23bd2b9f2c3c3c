"""Fine-tuning: the corpus packed into windows (with conditioning headers), the LoRA training loop with a held-out split and early stopping, and the model card."""
