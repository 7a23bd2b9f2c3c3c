"""The model: base weights and adapters, the generation engines, fine-tuning."""
