"""Thin command-line entry points (``python -m espnet_omni.bin.<name>``).

Each imports :mod:`espnet_omni.tasks` and exposes ``get_parser()`` and
``main(cmd=None)``.
"""
