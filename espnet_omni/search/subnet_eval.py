"""Score sub-networks of a trained supernet on a dev set (the search's proxy).

:class:`SubnetEvaluator` loads a Kaldi-style dev dir once, keeps it as padded
batches sorted by length, and for each :class:`SubnetConfig` activates it on
the encoder, runs ``model.encode`` and either CTC greedy decoding (argmax,
collapse repeats, drop blank; ids -> text with the training config's
tokenizer, as ``Speech2Text`` does: ``<space>`` for char units, ``▁`` for
sentencepiece) scored as WER/CER, or the CTC loss. Everything runs under
``torch.inference_mode()`` with the model in eval mode.

Replay cache (``cache_replay=True``, the default). Two stages do not depend
on the sub-network: ESPnet's frontend (STFT + fbank; never pruned) and the
encoder's subsampling ``embed`` when no prunable layer lies inside it
(``prune_frontend: false``). Their outputs are recorded per batch on the
first pass and replayed afterwards (cloned, since ESPnet's ``GlobalMVN``
normalises in place); the rest of ``model.encode`` runs unchanged, so the
result is identical to the uncached path (tested bitwise). Measured on a
4 x 144 Conformer (conv2d, 40 mel, random weights), one thread on a busy
2-core machine: frontend 29 ms, embed 95 ms, whole encoder 295 ms for a
batch of 8 x 4 s; one candidate on 20 utterances (79 s of audio) takes
0.85 s without and 0.48 s with the replay (WER or loss alike), after a
0.8 s recording pass. Memory: the recorded frontend + embed outputs are
about as big as the audio itself.

BatchNorm recalibration (``calibration_dir``): the supernet's sub-networks
share the conv modules' BatchNorm statistics, so each candidate is scored
after its own statistics are re-estimated from training utterances
(:mod:`espnet_omni.search.bn_calib`), as its export will be; the
statistics are restored afterwards. The calibration batches take part in the
replay cache like the dev batches.

Usage::

    model, args = OmniASRTask.build_model_from_file(config, model_file, "cpu")
    ev = SubnetEvaluator(model, "dump/raw/dev", train_args=args, max_utts=200)
    ev.score(SubnetConfig.uniform(model.encoder.prunable_layers(), 0.5,
                                  model.encoder.mask_spec), metric="wer")
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import humanfriendly
import torch
from espnet2.legacy.nets.pytorch_backend.transformer.subsampling import TooShortUttError
from espnet2.text.build_tokenizer import build_tokenizer
from espnet2.text.token_id_converter import TokenIDConverter

from espnet_omni.inference.transducer_decoder import TransducerGreedy
from espnet_omni.nets.transducer import is_transducer
from espnet_omni.search.bn_calib import (
    DEFAULT_CALIBRATION_UTTS,
    batchnorm_layers,
    kept_batchnorm_stats,
    recalibrate_batchnorm,
)
from espnet_omni.search.dev_set import load_dev_set, make_batches
from espnet_omni.nets.omni_conformer import supernet_encoder
from espnet_omni.scoring.wer import ErrorCounts, char_counts, word_counts
from espnet_omni.sparsity.layers import MASKED_LAYERS
from espnet_omni.sparsity.subnet import SubnetConfig
from espnet_omni.tasks import OmniASRTask

logger = logging.getLogger(__name__)

METRICS = ("wer", "cer", "loss")
# One minute of padded audio per batch: ~4 MB of float32 waveform, and on the
# 4 x 144 model about 1 s of CPU per batch; larger batches buy little on CPU.
DEFAULT_BATCH_SECONDS = 60.0


def ctc_greedy_ids(best: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Collapse repeats and drop blanks of frame-wise argmax ids.

    Args:
        best: ``(B, T)`` argmax token id per frame.
        lengths: ``(B,)`` valid frames per row.
        blank: the blank id.

    >>> ctc_greedy_ids(torch.tensor([[0, 2, 2, 0, 2, 3, 3, 1]]), torch.tensor([7]))
    [[2, 2, 3]]
    """
    out = []
    for row, n in zip(best.tolist(), lengths.tolist()):
        ids, prev = [], None
        for t in row[:n]:
            if t != prev and t != blank:
                ids.append(t)
            prev = t
        out.append(ids)
    return out


class TokenText:
    """Token ids -> text, as ESPnet's ``Speech2Text`` converts them.

    Args:
        token_list: the model's tokens (``model.token_list``).
        token_type: ``char``, ``bpe``, ``word``, ``phn`` ... from the config.
        bpemodel: sentencepiece model for ``bpe`` (path as in the config).
    """

    def __init__(self, token_list: list[str], token_type: str | None,
                 bpemodel: str | None = None) -> None:
        if token_type is None:
            raise ValueError("the training config has no token_type: cannot turn "
                             "token ids into text for WER/CER (use --metric loss)")
        if token_type in ("bpe", "hugging_face") and bpemodel is None:
            raise ValueError(f"token_type={token_type!r} needs bpemodel in the training config")
        kwargs = {"bpemodel": bpemodel} if token_type in ("bpe", "hugging_face") else {}
        self.tokenizer = build_tokenizer(token_type=token_type, **kwargs)
        self.converter = TokenIDConverter(token_list=list(token_list))

    def __call__(self, ids: list[int]) -> str:
        return self.tokenizer.tokens2text(self.converter.ids2tokens(ids))


class _Replay:
    """Record a module's output per batch, then return it instead of running it.

    Replaying patches ``module.forward`` (an instance attribute, removed on
    exit), so ``module(...)`` still goes through hooks and the caller's code
    is unchanged. The first positional argument's shape is checked against
    the recorded one to catch a batch mix-up.
    """

    def __init__(self, module: torch.nn.Module, name: str) -> None:
        self.module, self.name = module, name
        self.outputs: list = []
        self.in_shapes: list[tuple[int, ...]] = []

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        def hook(_m, args, output):
            self.in_shapes.append(tuple(args[0].shape))
            self.outputs.append(_clone(output))  # the consumer may modify it in place

        handle = self.module.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def replaying(self, index: int) -> Iterator[None]:
        recorded, shape = self.outputs[index], self.in_shapes[index]

        def forward(*args, **kwargs):
            if tuple(args[0].shape) != shape:
                raise RuntimeError(f"replayed {self.name} got input {tuple(args[0].shape)}, "
                                   f"recorded {shape} (batch {index})")
            return _clone(recorded)  # consumers may modify it in place

        self.module.forward = forward
        try:
            yield
        finally:
            del self.module.forward


def _clone(x):
    if isinstance(x, torch.Tensor):
        return x.clone()
    if isinstance(x, (tuple, list)):
        return type(x)(_clone(v) for v in x)
    return x


def _has_masked(module: torch.nn.Module | None) -> bool:
    return module is not None and any(isinstance(m, MASKED_LAYERS) for m in module.modules())


def _frontend_fs(train_args: argparse.Namespace) -> int:
    fs = (getattr(train_args, "frontend_conf", None) or {}).get("fs", 16000)
    return int(humanfriendly.parse_size(fs)) if isinstance(fs, str) else int(fs)


def _load_batches(data_dir: str | Path, train_args: argparse.Namespace, max_utts: int | None,
                  batch_seconds: float, device: str | torch.device, progress: bool) -> tuple[list, list]:
    """The utterances of a data dir (preprocessed as the model was trained) and
    their padded batches on ``device``."""
    preprocess = OmniASRTask.build_preprocess_fn(train_args, train=False)
    utts = load_dev_set(data_dir, preprocess, max_utts, progress)
    return utts, [b.to(device) for b in make_batches(utts, batch_seconds, _frontend_fs(train_args))]


HEADS = ("ctc", "transducer")


def check_head(model: torch.nn.Module, head: str) -> None:
    """Raise ``ValueError`` naming the option when ``model`` has no ``head`` to score with."""
    if head not in HEADS:
        raise ValueError(f"head={head!r} is not one of {HEADS}")
    transducer = is_transducer(model)
    if head == "transducer" and not transducer:
        raise ValueError("fitness head 'transducer' (greedy RNN-T) needs a transducer model (model: "
                         "transducer_torchaudio, decoder: transducer); this one decodes with CTC: use --head ctc")
    if head == "ctc" and getattr(model, "ctc", None) is None:
        raise ValueError(
            "sub-network evaluation scores CTC greedy decoding (wer, cer) or the CTC loss, and this "
            "model has no CTC head (model_conf.ctc_weight: 0): "
            + ("score it through its transducer (--head transducer) or " if transducer else "")
            + "train it with an auxiliary CTC (ctc_weight > 0)")


def default_head(model: torch.nn.Module) -> str:
    """``transducer`` for a transducer model (the papers' RNN-T), else ``ctc``."""
    return "transducer" if is_transducer(model) else "ctc"


class SubnetEvaluator:
    """Dev-set score of any sub-network of a supernet ASR model.

    Args:
        model: an ESPnet ASR model whose ``encoder`` is an
            :class:`OmniConformerEncoder` (put in eval mode here).
        data_dir: Kaldi-style dir with ``wav.scp`` and ``text``.
        train_args: the training config (``build_model_from_file``'s second
            value): tokenizer, preprocessor and sampling rate come from it.
        max_utts: score on N utterances spread evenly over the set (None: all).
        batch_seconds: padded seconds of audio per batch.
        device: where batches go (the model must be there already).
        cache_replay: record and replay the sub-network-independent stages
            (see the module docstring); False runs everything every time.
        progress: tqdm bar while loading the audio.
        calibration_dir: Kaldi-style training dir: recalibrate the
            BatchNorm statistics of every scored sub-network on it (None: the
            checkpoint's statistics as they are).
        calibration_utts: calibration utterances, spread evenly over the dir.
        mode: the encoder mode every sub-network is scored (and recalibrated)
            in: ``full`` or ``streaming`` (its config's chunked attention and
            causal convolutions: the sparse networks of a dual-mode supernet).
        head: what decodes and scores the encoder output: ``ctc`` (CTC greedy,
            the CTC loss) or ``transducer`` (greedy RNN-T over the prediction
            and joint networks, the transducer loss) of a transducer model.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        data_dir: str | Path,
        *,
        train_args: argparse.Namespace,
        max_utts: int | None = None,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        device: str | torch.device = "cpu",
        cache_replay: bool = True,
        progress: bool = False,
        calibration_dir: str | Path | None = None,
        calibration_utts: int = DEFAULT_CALIBRATION_UTTS,
        mode: str = "full",
        head: str = "ctc",
    ) -> None:
        encoder = supernet_encoder(model, "sub-network evaluation")
        encoder.set_active_mode(mode)
        check_head(model, head)
        self.head = head
        self.model, self.encoder = model.eval(), encoder
        self.text = TokenText(model.token_list, train_args.token_type,
                              getattr(train_args, "bpemodel", None))
        utts, self.batches = _load_batches(data_dir, train_args, max_utts, batch_seconds, device, progress)
        self.references = {u.uid: u.text for u in utts}
        self.calibration_batches = []
        if calibration_dir is not None and batchnorm_layers(model):
            _, self.calibration_batches = _load_batches(calibration_dir, train_args, calibration_utts,
                                                        batch_seconds, device, progress)
        elif calibration_dir is not None:
            logger.info("the model has no BatchNorm: nothing to recalibrate")
        self._all = self.batches + self.calibration_batches  # replay index order
        self._replays: list[_Replay] = []
        if cache_replay:
            self._record()

    @property
    def n_utts(self) -> int:
        """Utterances scored."""
        return len(self.references)

    @property
    def replayed(self) -> list[str]:
        """Modules whose recorded outputs are replayed (see module docstring)."""
        return [r.name for r in self._replays]

    # ---------------------------------------------------------------- internals
    def _record(self) -> None:
        """One dense pass recording the frontend / embed outputs per batch."""
        candidates = [(getattr(self.model, "frontend", None), "frontend"),
                      (getattr(self.encoder, "embed", None), "encoder.embed")]
        self._replays = [_Replay(m, n) for m, n in candidates
                         if m is not None and not _has_masked(m)]
        logger.info("replaying %s across sub-networks", [r.name for r in self._replays])
        previous = self.encoder.get_active_subnet()
        self.encoder.set_max_net()
        try:
            with contextlib.ExitStack() as stack:
                for r in self._replays:
                    stack.enter_context(r.recording())
                for i in range(len(self._all)):
                    self._encode(i, replay=False)
        finally:
            self.encoder.set_active_subnet(previous)

    @torch.inference_mode()
    def _encode(self, index: int, replay: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``model.encode`` of batch ``index`` (dev batches first, then the
        calibration ones) -> ``(B, T', D)``, ``(B,)``."""
        b = self._all[index]
        with contextlib.ExitStack() as stack:
            if replay:
                for r in self._replays:
                    stack.enter_context(r.replaying(index))
            try:
                enc, lens = self.model.encode(b.speech, b.speech_lengths)
            except TooShortUttError as e:
                raise ValueError(f"batch with {b.uids}: {e}") from e
        if isinstance(enc, tuple):  # (final, intermediate CTC outputs)
            enc = enc[0]
        return enc, lens

    @contextlib.contextmanager
    def _active(self, cfg: SubnetConfig) -> Iterator[None]:
        """``cfg`` active (and its BatchNorm recalibrated) inside; restored on exit."""
        previous = self.encoder.get_active_subnet()
        self.encoder.set_active_subnet(cfg)
        try:
            with kept_batchnorm_stats(self.model):
                if self.calibration_batches:
                    first = len(self.batches)
                    recalibrate_batchnorm(self.model, range(first, len(self._all)), self._encode)
                yield
        finally:
            self.encoder.set_active_subnet(previous)

    # -------------------------------------------------------------- public API
    @torch.inference_mode()
    def decode_all(self, cfg: SubnetConfig) -> dict[str, str]:
        """CTC greedy hypothesis text per utterance id (dev-set order)."""
        hyps: dict[str, str] = {}
        with self._active(cfg):
            for i, b in enumerate(self.batches):
                enc, lens = self._encode(i)
                if self.head == "transducer":
                    for j, uid in enumerate(b.uids):
                        search = TransducerGreedy(self.model.decoder, self.model.joint_network, self.model.blank_id)
                        search.step(enc[j, : int(lens[j])])
                        hyps[uid] = self.text(search.best())
                    continue
                best = self.model.ctc.argmax(enc)  # (B, T')
                for uid, ids in zip(b.uids, ctc_greedy_ids(best, lens, self.model.blank_id)):
                    hyps[uid] = self.text(ids)
        return {uid: hyps[uid] for uid in self.references}

    def error_counts(self, cfg: SubnetConfig, unit: str = "word") -> ErrorCounts:
        """Summed edit counts of the greedy hypotheses (``word`` or ``char``)."""
        count = {"word": word_counts, "char": char_counts}[unit]
        total = ErrorCounts()
        for uid, hyp in self.decode_all(cfg).items():
            total = total + count(self.references[uid], hyp)
        return total

    @torch.inference_mode()
    def mean_loss(self, cfg: SubnetConfig) -> float:
        """CTC (or transducer) loss per utterance, averaged over the dev set (ESPnet's
        ``loss_ctc``, ``loss_transducer``: summed over frames, not length-normalised)."""
        if any(b.text_ids is None for b in self.batches):
            raise ValueError("metric 'loss' needs token ids of the references: the "
                             "training config has use_preprocessor: false")
        total = 0.0
        with self._active(cfg):
            for i, b in enumerate(self.batches):
                enc, lens = self._encode(i)
                # ESPnet's CTC and transducer losses are batch means: undo it to sum utterances.
                if self.head == "transducer":
                    loss = self.model._calc_transducer_loss(enc, lens, b.text_ids)[0]
                else:
                    loss = self.model.ctc(enc, lens, b.text_ids, b.text_lengths)
                total += float(loss) * len(b.uids)
        return total / self.n_utts

    def score(self, cfg: SubnetConfig, metric: str = "wer") -> float:
        """Dev-set ``wer`` / ``cer`` (fractions, lower is better) or mean ``loss``.

        The encoder's active sub-network is restored afterwards.
        """
        if metric == "wer":
            return self.error_counts(cfg, "word").rate
        if metric == "cer":
            return self.error_counts(cfg, "char").rate
        if metric == "loss":
            return self.mean_loss(cfg)
        raise ValueError(f"metric={metric!r} is not one of {METRICS}")


def calibrate_subnet(model: torch.nn.Module, train_args: argparse.Namespace, cfg: SubnetConfig,
                     data_dir: str | Path, max_utts: int | None = DEFAULT_CALIBRATION_UTTS,
                     batch_seconds: float = DEFAULT_BATCH_SECONDS,
                     progress: bool = False, mode: str = "full") -> tuple[int, int]:
    """Activate ``cfg`` and re-estimate its BatchNorm statistics on ``max_utts``
    utterances of ``data_dir`` (training data), e.g. before exporting it.

    The statistics are those of the encoder in ``mode`` (``full`` or
    ``streaming``), the mode the sub-network will run in. The sub-network
    stays active (in that mode) and the model in eval mode. Returns the
    numbers of BatchNorm layers recalibrated and of utterances used
    (``(0, 0)``: the model has no BatchNorm).
    """
    encoder = supernet_encoder(model, "BatchNorm recalibration")
    encoder.set_active_subnet(cfg)
    encoder.set_active_mode(mode)
    if not batchnorm_layers(model):
        return 0, 0
    device = next(model.parameters()).device
    utts, batches = _load_batches(data_dir, train_args, max_utts, batch_seconds, device, progress)
    with torch.inference_mode():
        layers = recalibrate_batchnorm(model, batches, lambda b: model.encode(b.speech, b.speech_lengths))
    return layers, len(utts)


def calibrate_for_export(model: torch.nn.Module, train_args: argparse.Namespace, cfg: SubnetConfig,
                         data_dir: str | Path, max_utts: int, mode: str = "full") -> dict:
    """:func:`calibrate_subnet` in ``mode`` before an export, then the encoder back in full
    mode (the exporter's checks run there); returns the record ``export.json`` keeps
    (``bn_calibration``: data dir, utterances, layers, mode)."""
    layers, utts = calibrate_subnet(model, train_args, cfg, data_dir, max_utts, mode=mode)
    model.encoder.set_active_mode("full")
    return {"data_dir": str(data_dir), "utts": utts, "layers": layers, "mode": mode}
