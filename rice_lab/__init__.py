"""rice-lab: self-supervised multi-sensor rice-leaf models, fine-tuned and explained with rigour."""

__version__ = "0.1.0"
