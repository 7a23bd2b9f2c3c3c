"""batplots: co-write 1966 Batman episode plots with a small fine-tuned model."""
__version__ = "0.1.0"
