"""Measuring the product: eval (perplexity, copying, story metrics), memorisation, bench."""
