"""Data for espnet_omni: the embedded offline corpus and LibriSpeech prep.

* ``text``        : sentence pool (fortunes, WordNet) and ``normalize_transcript``.
* ``voices``      : TTS voice catalogue, speaker-disjoint splits, engine checks.
* ``plan``        : deterministic per-utterance plan (sentence, voice, augmentation).
* ``synth``       : renders the plan into Kaldi data dirs (CLI).
* ``real``        : the 5-utterance LibriVox ``real`` test set (CLI).
* ``librispeech`` : data dirs from a local LibriSpeech copy (CLI).
* ``datadir``     : Kaldi data-dir read / write / validate.
* ``format_data`` : per-utterance checks + ``utt2num_samples`` (CLI).
* ``audio_check`` : truncated files, NaN/inf samples (format stage, decoding).
"""
