"""ESPnet's encoder-only SSL model, made fit for wav2vec 2.0 (``model: omni_ssl``).

Four differences from :class:`espnet2.ssl.espnet_model.ESPnetSSLModel`:

1. ``encode`` hands the losses the *unmasked* encoder input as ``features``
   (wav2vec 2.0 quantizes it as the targets). ESPnet's ``mask`` util writes
   the mask embedding into its input in place, so it gets a copy here;
   gradients still reach the pre-encoder through both paths.
2. Bad input is refused with the key and the range: a ``mask`` util whose
   ``mask_prob`` / ``mask_channel_prob`` is outside [0, 1] or whose
   ``mask_length`` is < 1 (when the model is built), and utterances too
   short to mask (fewer than ``2 * mask_length`` encoder-input frames; the
   error lists their ids: drop them, e.g. with run.sh ``--min_sec``).
3. A non-finite loss (the wav2vec 2.0 loss raises ``FloatingPointError``) is
   logged with the utterance ids of the batch and returned as NaN, so ESPnet's
   trainer sees a non-finite gradient norm and skips that update (its own
   handling of bad batches); nothing goes NaN silently.

4. ``--collect_stats`` works without transcripts (wav2vec 2.0 needs none).

Everything else (frontend, SpecAugment, normalization, pre-encoder, losses,
``step`` of losses/utils, the returned ``(loss, stats, weight)``) is ESPnet's.
The EMA util (data2vec/DinoSR) is not supported here.
"""

from __future__ import annotations

import logging
from typing import Dict, Optional

import torch
from espnet2.legacy.nets.pytorch_backend.nets_utils import make_pad_mask
from espnet2.ssl.espnet_model import ESPnetSSLModel
from espnet2.torch_utils.device_funcs import force_gatherable

SUPPORTED_UTILS = frozenset({"mask"})


class OmniSSLModel(ESPnetSSLModel):
    """:class:`ESPnetSSLModel` with ``features`` for the losses (see module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        unsupported = set(self.util_attributes) - SUPPORTED_UTILS
        if unsupported:
            raise NotImplementedError(
                f"model: omni_ssl supports the utils {sorted(SUPPORTED_UTILS)}, not {sorted(unsupported)}")
        if "mask" in self.util_modules:
            m = self.util_modules["mask"]
            for key in ("mask_prob", "mask_channel_prob"):
                value = getattr(m, key)
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"util: mask: conf: {key}={value} is outside [0, 1]")
            if m.mask_length < 1:
                raise ValueError(f"util: mask: conf: mask_length={m.mask_length} must be >= 1 frame")
        self._utt_ids: Optional[list] = None

    def forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor = None,
                text_lengths: torch.Tensor = None, **kwargs):
        """ESPnet's forward; a non-finite loss is logged with the batch's ids."""
        self._utt_ids = kwargs.get("utt_id")
        try:
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        except FloatingPointError as err:
            logging.warning("non-finite SSL loss (%s) in the batch of utterances %s; "
                            "returned as NaN so that this update is skipped", err, self._ids())
            params = [p for p in self.parameters() if p.requires_grad]
            nan = sum(p.sum() for p in params) * float("nan")  # NaN gradients -> ESPnet skips the step
            return force_gatherable((nan, {"loss": nan.detach()}, speech.shape[0]), nan.device)

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor = None,
                      text_lengths: torch.Tensor = None, **kwargs) -> Dict[str, torch.Tensor]:
        """Features for ``--collect_stats``; no transcripts needed (ESPnet's
        requires ``text``, which wav2vec 2.0 data does not have)."""
        feats, feats_lengths = self._extract_feats(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": feats_lengths}

    def _ids(self) -> list:
        return list(self._utt_ids) if self._utt_ids is not None else ["(ids unknown)"]

    def encode(self, speech: torch.Tensor, speech_lengths: torch.Tensor, text: torch.Tensor = None,
               text_lengths: torch.Tensor = None, use_final_output: bool = True) -> Dict:
        """Frontend -> SpecAugment -> normalize -> pre-encoder -> ``features``
        -> mask (on a copy) -> encoder; returns what the losses may require."""
        data = {}
        speech, speech_lengths = self._extract_feats(speech, speech_lengths)
        if "frontend" in self.required_inputs:
            data["frontend"], data["frontend_lengths"] = speech, speech_lengths
        if self.specaug is not None and self.training:
            speech, speech_lengths = self.specaug(speech, speech_lengths)
        if self.normalize is not None:
            speech, speech_lengths = self.normalize(speech, speech_lengths)
        if self.preencoder is not None:
            speech, speech_lengths = self.preencoder(speech, speech_lengths)
            if "preencoder" in self.required_inputs:
                data["preencoder"], data["preencoder_lengths"] = speech, speech_lengths
        pad_masks = make_pad_mask(speech_lengths, maxlen=speech.size(1)).to(speech.device)
        data["features"], data["features_lengths"] = speech, speech_lengths
        if "mask" in self.util_attributes:
            self._check_maskable(speech_lengths)
            speech, data["mask_info"] = self.util_modules["mask"](speech.clone(), pad_masks)
        out, out_lengths, _ = self.encoder(speech, speech_lengths, masks=pad_masks, return_all_hs=True)
        data["encoder_output"] = out[1][:-1] + [out[0]] if use_final_output else out[1]
        data["encoder_output_lengths"] = out_lengths
        return data

    def _check_maskable(self, lengths: torch.Tensor) -> None:
        need = 2 * self.util_modules["mask"].mask_length
        short = (lengths < need).nonzero().flatten().tolist()
        if short:
            ids = self._ids()
            names = [ids[i] if i < len(ids) else f"#{i}" for i in short]
            raise ValueError(
                f"utterances {names} have {[int(lengths[i]) for i in short]} encoder-input frames; masking "
                f"needs >= {need} (2 x util mask_length): drop short utterances (run.sh --min_sec) or lower "
                "mask_length")
