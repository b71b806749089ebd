"""Supernet training: the trainer (``espnet_omni.train.trainer``) and samplers.

Kept import-light: import ``espnet_omni.train.trainer`` explicitly.
"""
