"""A tiny RNN-T model (``model: transducer_torchaudio``) on the tiny corpus, without training.

Not a test module. ``transducer_args(root)`` gives the training args (the tiny omni_conformer
with ESPnet's transducer head: a 16-unit LSTM prediction network and a 16-dim joint network);
``random_transducer(root)`` builds that model with its joint network's outputs spread, so that
an untrained model emits tokens and blanks (an untrained one says blank everywhere).
"""

from __future__ import annotations

from pathlib import Path

import torch

from espnet_omni.testing import tiny_asr

TRANSDUCER = ["--model", "transducer_torchaudio", "--model_conf", "{ctc_weight: 0.3, report_cer: true}",
              "--decoder", "transducer", "--decoder_conf", "{rnn_type: lstm, num_layers: 1, hidden_size: 16}",
              "--joint_net_conf", "{joint_space_size: 16}"]
BLANK_BIAS = 3.0  # added to the blank logit of random_transducer: blank about every other frame


def transducer_args(root: Path):
    """The tiny RNN-T's training args (paths relative to ``root``, whose ``data/tokens.txt``
    :func:`~espnet_omni.testing.tiny_asr.write_corpus` wrote); no global MVN."""
    from espnet_omni.tasks import OmniASRTask

    flags = tiny_asr.train_flags(Path("stats"), Path("exp"), "omni_conformer")
    for opt in ("--model_conf", "--decoder"):  # the tiny CTC model's
        i = flags.index(opt)
        del flags[i:i + 2]
    args = OmniASRTask.get_parser().parse_args(flags + TRANSDUCER + ["--normalize", "none"])
    args.token_list = (Path(root) / tiny_asr.TOKENS).read_text().split()
    return args


def random_transducer(root: Path, seed: int = 0, blank_bias: float = BLANK_BIAS) -> torch.nn.Module:
    """Write the tiny corpus into ``root`` and build the tiny RNN-T (eval mode, seeded), its joint
    network's output layer redrawn (std 2) and ``blank_bias`` added to its blank logit."""
    from espnet_omni.tasks import OmniASRTask

    tiny_asr.write_corpus(Path(root))
    torch.manual_seed(seed)
    model = OmniASRTask.build_model(transducer_args(root)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.joint_network.lin_out.weight, std=2.0)
        model.joint_network.lin_out.bias[model.blank_id] += blank_bias
    return model
