"""OmniSSLTask: ESPnet's SSLTask with our encoders/losses and our trainer.

``SSL_CHOICES`` is the public table (see :mod:`espnet_omni.tasks.registry`).
Besides SSLTask's ``class_choices_list`` it extends ``loss`` and ``util``,
which SSLTask resolves from module globals: YAML ``loss: [{name: ..., conf:
{...}}]`` and the loss's ``util_attributes``.
"""

from __future__ import annotations

import argparse

import espnet2.tasks.ssl
from espnet2.tasks.ssl import SSLTask

from espnet_omni.tasks.entries import SSL_ENTRIES
from espnet_omni.tasks.registry import ChoiceTable
from espnet_omni.train.trainer import OmniTrainer

_SSL_LISTED = tuple(c.name for c in SSLTask.class_choices_list)
# Not in class_choices_list (no --loss/--util ClassChoices flags) but looked
# up by SSLTask.build_model as espnet2.tasks.ssl.{loss,util}_choices.
_SSL_UNLISTED = ("loss", "util")

SSL_CHOICES = ChoiceTable(espnet2.tasks.ssl, _SSL_LISTED + _SSL_UNLISTED, SSL_ENTRIES)


class OmniSSLTask(SSLTask):
    """SSLTask whose options include our classes and whose trainer is ours."""

    class_choices_list = SSL_CHOICES.class_choices_list(_SSL_LISTED)
    trainer = OmniTrainer

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        """ESPnet's build_model, resolving option names through our choices."""
        with SSL_CHOICES.installed():
            return super().build_model(args)
