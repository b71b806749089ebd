"""RNN-T with torchaudio's loss through ESPnet's transducer model (model: transducer_torchaudio)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch
import torchaudio

from espnet_omni.nets.transducer import TorchaudioRNNTLoss, TransducerASRModel
from espnet_omni.tasks import OmniASRTask, OmniSpeech2Text
from espnet_omni.testing import tiny_asr

TRANSDUCER = ["--model", "transducer_torchaudio", "--model_conf", "{ctc_weight: 0.3, report_cer: true}",
              "--decoder", "transducer", "--decoder_conf", "{rnn_type: lstm, num_layers: 1, hidden_size: 16}",
              "--joint_net_conf", "{joint_space_size: 16}"]


def test_loss_adapter_is_torchaudio_with_gradients():
    torch.manual_seed(0)
    acts = torch.randn(2, 7, 4, 5, requires_grad=True)
    labels = torch.randint(1, 5, (2, 3))
    act_lens, label_lens = torch.tensor([7, 5]), torch.tensor([3, 2])
    loss = TorchaudioRNNTLoss(blank=0)(acts, labels, act_lens, label_lens)
    ref = torchaudio.functional.rnnt_loss(acts, labels.int(), act_lens.int(), label_lens.int(), blank=0)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    assert torch.isfinite(acts.grad).all() and acts.grad.abs().sum() > 0
    with pytest.raises(NotImplementedError, match="FastEmit"):
        TorchaudioRNNTLoss(fastemit_lambda=0.01)
    assert "warprnnt_pytorch" not in sys.modules or sys.modules["warprnnt_pytorch"].__name__ != "warprnnt_pytorch"


def test_supernet_transducer_trains_and_decodes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny_asr.write_corpus(tmp_path)
    from espnet_omni.bin import asr_train

    asr_train.main(tiny_asr.collect_stats_flags(Path("stats"), "omni_conformer"))
    flags = [f for f in tiny_asr.train_flags(Path("stats"), Path("exp"), "omni_conformer")]
    i = flags.index("--model_conf")
    del flags[i:i + 2]  # ctc-only model_conf of the tiny CTC model
    i = flags.index("--decoder")
    del flags[i:i + 2]
    start = time.process_time()
    asr_train.main(flags + TRANSDUCER + ["--omni_conf", "{sampler: {rule: sandwich, num_subnets: 2}}"])
    assert time.process_time() - start < 300
    model, _ = OmniASRTask.build_model_from_file("exp/config.yaml", "exp/valid.loss.best.pth", "cpu")
    assert isinstance(model, TransducerASRModel) and model.use_transducer_decoder
    assert "warprnnt_pytorch" not in sys.modules  # the shim lives only during construction
    # ESPnet's transducer beam search decodes it (CTC weight unused by the transducer search)
    s2t = OmniSpeech2Text(asr_train_config="exp/config.yaml", asr_model_file="exp/valid.loss.best.pth",
                          beam_size=2, device="cpu")
    import soundfile

    wav, _ = soundfile.read(tiny_asr.VALID.parent / "wav" / "valid_utt0.wav", dtype="float32")
    text = s2t(torch.from_numpy(wav))[0][0]
    assert isinstance(text, str)
    assert os.path.exists("exp/compute.json")


def test_transducer_model_without_transducer_decoder_is_refused(tmp_path):
    args = OmniASRTask.get_parser().parse_args(
        tiny_asr.train_flags(Path("stats"), Path("exp"), "omni_conformer")
        + ["--model", "transducer_torchaudio", "--normalize", "none"])
    args.token_list = ["<blank>", "a", "<sos/eos>"]
    with pytest.raises(ValueError, match="needs 'decoder: transducer'"):
        OmniASRTask.build_model(args)
