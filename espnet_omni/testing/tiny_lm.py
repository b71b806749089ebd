"""A tiny ESPnet LM (``lm: seq_rnn``) with random weights, written as ESPnet's LM task writes one.

Test dummies for the streaming LM fusion: ``write_tiny_lm(out_dir, token_list)`` gives the
``config.yaml`` and model file that ``--lm_train_config`` / ``--lm_file`` take, without a
training run (``LMTask.build_model_from_file`` loads them like ``exp/lm_char/``).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

import torch
import yaml

from espnet_omni.inference.lm_scorer import LMScorer, TorchLM


def write_tiny_lm(out_dir: Union[str, Path], token_list: List[str], unit: int = 16, nlayers: int = 1,
                  rnn_type: str = "lstm", seed: int = 0, scale: float = 1.0) -> Tuple[Path, Path]:
    """Write ``out_dir/{config.yaml,model.pth}``: a random ``SequentialRNNLM`` over ``token_list``.

    ``scale`` multiplies the output layer's weights and biases: a larger one makes the LM
    more opinionated (so a test can see the fusion change a hypothesis).
    """
    from espnet2.tasks.lm import LMTask

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = LMTask.get_parser().parse_args([
        "--lm", "seq_rnn", "--lm_conf", yaml.safe_dump({"unit": unit, "nlayers": nlayers, "rnn_type": rnn_type}),
        "--token_list", "none", "--output_dir", str(out)])
    args.token_list = list(token_list)
    torch.manual_seed(seed)
    model = LMTask.build_model(args)
    with torch.no_grad():
        model.lm.decoder.weight.mul_(scale)
        model.lm.decoder.bias.normal_().mul_(scale)
    config, weights = out / "config.yaml", out / "model.pth"
    config.write_text(yaml.safe_dump(vars(args), sort_keys=False))
    torch.save(model.state_dict(), weights)
    return config, weights


def random_torch_lm(vocab: int, seed: int = 0, scale: float = 3.0, nlayers: int = 2) -> TorchLM:
    """A :class:`~espnet_omni.inference.lm_scorer.TorchLM` over a random 8-unit
    ``SequentialRNNLM``; ``scale`` sharpens its output layer (an opinionated LM)."""
    from espnet2.lm.seq_rnn_lm import SequentialRNNLM

    torch.manual_seed(seed)
    lm = SequentialRNNLM(vocab, unit=8, nlayers=nlayers)
    with torch.no_grad():
        lm.decoder.weight.mul_(scale)
    return TorchLM(lm, vocab)


class CountingLM(LMScorer):
    """Wraps an LM scorer and counts its batched calls (``calls``): a test checks the
    one-call-per-frame promise of the searches."""

    def __init__(self, lm: LMScorer):
        self.lm, self.calls = lm, 0
        self.sos, self.eos, self.vocab_size = lm.sos, lm.eos, lm.vocab_size

    def _score(self, prefixes, states, last):
        self.calls += 1
        return self.lm._score(prefixes, states, last)
