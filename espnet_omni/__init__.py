"""espnet_omni: omni-sparsity and dual-mode ASR supernets for ESPnet."""

__version__ = "0.1.0"
