"""THE table of our classes offered through ESPnet options.

To offer a new class, add one :class:`ChoiceEntry` line below; nothing else
changes. ``choice`` is the ESPnet option (``encoder`` -> ``--encoder`` and
``encoder:`` in a YAML config), ``key`` is the value users write, ``target``
is ``"module:Class"``. A target whose module does not exist yet is skipped
(listed in ``ASR_CHOICES.skipped`` / ``SSL_CHOICES.skipped``); a module that
exists but fails to import, or lacks the class, raises at import of
``espnet_omni.tasks``.

Options a table can extend (ESPnet 202611):
    ASR: frontend specaug normalize model preencoder encoder postencoder
         decoder preprocessor
    SSL: frontend specaug normalize preencoder encoder model loss util
"""

from espnet_omni.tasks.registry import ChoiceEntry

_OMNI_CONFORMER = "espnet_omni.nets.omni_conformer:OmniConformerEncoder"
_CONV_PREENCODER = "espnet_omni.nets.conv_preencoder:Conv2dSubsamplingPreEncoder"
_VTLP = "espnet_omni.nets.vtlp:VTLPSpecAug"

ASR_ENTRIES: tuple[ChoiceEntry, ...] = (
    ChoiceEntry("encoder", "omni_conformer", _OMNI_CONFORMER),
    # An exported sub-network (sparse or row format): stock shapes or per-layer sizes.
    ChoiceEntry("encoder", "omni_conformer_pruned", "espnet_omni.nets.pruned_conformer:PrunedConformerEncoder"),
    ChoiceEntry("preencoder", "conv2d_subsampling", _CONV_PREENCODER),
    # Vocal-tract-length perturbation of the mel filterbank per utterance, then SpecAugment.
    ChoiceEntry("specaug", "vtlp_specaug", _VTLP),
    # RNN-T: ESPnet's transducer model with torchaudio's rnnt_loss (no warp-transducer build).
    ChoiceEntry("model", "transducer_torchaudio", "espnet_omni.nets.transducer:TransducerASRModel"),
)

SSL_ENTRIES: tuple[ChoiceEntry, ...] = (
    ChoiceEntry("encoder", "omni_conformer", _OMNI_CONFORMER),
    # The Conformer's conv2d subsampling as the feature encoder whose output is masked.
    ChoiceEntry("preencoder", "conv2d_subsampling", _CONV_PREENCODER),
    ChoiceEntry("specaug", "vtlp_specaug", _VTLP),
    # wav2vec 2.0; SSL losses are chosen in YAML as  loss: [{name: wav2vec2, conf: {...}}].
    ChoiceEntry("loss", "wav2vec2", "espnet_omni.ssl.wav2vec2:Wav2Vec2Loss"),
    # ESPnet's SSL model, handing the losses the unmasked features (wav2vec 2.0 targets).
    ChoiceEntry("model", "omni_ssl", "espnet_omni.ssl.model:OmniSSLModel"),
)
