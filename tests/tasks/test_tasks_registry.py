"""Registration: our task choices = ESPnet's + ours; ESPnet untouched."""

from __future__ import annotations

import importlib
import importlib.util
import sys

import espnet2.tasks.asr
import espnet2.tasks.ssl
import pytest
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.tasks.asr import ASRTask
from espnet2.tasks.ssl import SSLTask

import espnet_omni.tasks
from espnet_omni.tasks import (
    ASR_CHOICES,
    SSL_CHOICES,
    ChoiceEntry,
    ChoiceTable,
    OmniASRTask,
    OmniSSLTask,
)
from espnet_omni.tasks.entries import ASR_ENTRIES, SSL_ENTRIES
from espnet_omni.train.trainer import OmniTrainer
from tasks_dummies import TinyLinearEncoder, tiny_asr_cmd, write_tokens

DUMMY_KEY = "test_tiny_linear"


@pytest.fixture
def dummy_encoder():
    """Register TinyLinearEncoder in ASR_CHOICES for one test."""
    ASR_CHOICES.register("encoder", DUMMY_KEY, TinyLinearEncoder)
    yield DUMMY_KEY
    ASR_CHOICES.unregister("encoder", DUMMY_KEY)


@pytest.mark.parametrize(
    "task, espnet_task, module, extra",
    [
        (OmniASRTask, ASRTask, espnet2.tasks.asr, ()),
        (OmniSSLTask, SSLTask, espnet2.tasks.ssl, ("loss", "util")),
    ],
)
def test_our_choices_are_new_objects_and_supersets(task, espnet_task, module, extra):
    assert task.trainer is OmniTrainer
    assert [c.name for c in task.class_choices_list] == [
        c.name for c in espnet_task.class_choices_list
    ]
    for ours, theirs in zip(task.class_choices_list, espnet_task.class_choices_list):
        assert ours is not theirs
        assert theirs is getattr(module, f"{theirs.name}_choices")
        assert theirs.classes.items() <= ours.classes.items()
        assert (ours.default, ours.optional) == (theirs.default, theirs.optional)
    table = ASR_CHOICES if task is OmniASRTask else SSL_CHOICES
    for name in extra:
        assert getattr(module, f"{name}_choices").classes.items() <= (
            table.choices(name).classes.items()
        )


def test_espnet_choices_never_gain_our_classes(dummy_encoder, tmp_path):
    args = OmniASRTask.get_parser().parse_args(
        tiny_asr_cmd(write_tokens(tmp_path), dummy_encoder, "{output_size: 4}")
    )
    OmniASRTask.build_model(args)
    pairs = ((espnet2.tasks.asr, ASR_CHOICES), (espnet2.tasks.ssl, SSL_CHOICES))
    for module, table in pairs:
        for name in table.names:
            espnet_choices = getattr(module, f"{name}_choices")
            assert espnet_choices is not table.choices(name)
            assert not set(table.added(name)) & set(espnet_choices.classes)
    with pytest.raises(SystemExit):  # stock ASRTask rejects our key
        ASRTask.get_parser().parse_args(["--encoder", dummy_encoder])


def test_registered_encoder_parses_and_builds(dummy_encoder, tmp_path):
    args = OmniASRTask.get_parser().parse_args(
        tiny_asr_cmd(write_tokens(tmp_path), dummy_encoder, "{output_size: 4}")
    )
    model = OmniASRTask.build_model(args)
    assert isinstance(model.encoder, TinyLinearEncoder)
    assert model.encoder.output_size() == 4


def test_espnet_encoder_still_builds_through_our_task(tmp_path):
    args = OmniASRTask.get_parser().parse_args(
        tiny_asr_cmd(
            write_tokens(tmp_path),
            "conformer",
            "{output_size: 8, attention_heads: 2, linear_units: 8, num_blocks: 1}",
        )
    )
    model = OmniASRTask.build_model(args)
    assert type(model.encoder) is ConformerEncoder


def test_build_restores_espnet_globals_even_on_error(tmp_path):
    before = espnet2.tasks.asr.encoder_choices
    args = OmniASRTask.get_parser().parse_args(
        tiny_asr_cmd(write_tokens(tmp_path), "conformer", "{no_such_kwarg: 1}")
    )
    with pytest.raises(TypeError, match="no_such_kwarg"):
        OmniASRTask.build_model(args)
    assert espnet2.tasks.asr.encoder_choices is before


def test_register_is_idempotent_and_refuses_conflicts(dummy_encoder):
    ASR_CHOICES.register("encoder", dummy_encoder, TinyLinearEncoder)  # same: no-op
    assert ASR_CHOICES.added("encoder")[dummy_encoder] is TinyLinearEncoder

    class Other(TinyLinearEncoder):
        pass

    with pytest.raises(ValueError, match="already registered"):
        ASR_CHOICES.register("encoder", dummy_encoder, Other)
    with pytest.raises(ValueError, match="ESPnet already defines"):
        ASR_CHOICES.register("encoder", "conformer", Other)
    with pytest.raises(TypeError, match="AbsEncoder"):
        ASR_CHOICES.register("encoder", "test_not_an_encoder", dict)
    with pytest.raises(ValueError, match="must match"):
        ASR_CHOICES.register("encoder", "Bad-Key", Other)
    with pytest.raises(ValueError, match="must match"):
        ASR_CHOICES.register("encoder", "none", Other)
    with pytest.raises(KeyError, match="valid: .*encoder"):
        ASR_CHOICES.register("encoderr", "test_x", Other)
    with pytest.raises(KeyError, match="not one of ours"):
        ASR_CHOICES.unregister("encoder", "conformer")


def test_entry_with_missing_module_is_skipped():
    entry = ChoiceEntry("encoder", "ghost", "espnet_omni.nets._no_such_mod_xyz:Ghost")
    table = ChoiceTable(espnet2.tasks.asr, ("encoder",), [entry])
    assert "ghost" not in table.choices("encoder").classes
    assert "not found" in table.skipped["encoder:ghost"]


def test_entry_with_broken_module_raises(tmp_path, monkeypatch):
    (tmp_path / "omni_test_broken_mod.py").write_text("import _omni_no_such_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = ChoiceEntry("encoder", "broken", "omni_test_broken_mod:Enc")
    with pytest.raises(ModuleNotFoundError, match="_omni_no_such_dep_xyz"):
        ChoiceTable(espnet2.tasks.asr, ("encoder",), [entry])
    sys.modules.pop("omni_test_broken_mod", None)


def test_entry_missing_class_raises_existing_class_registers(tmp_path, monkeypatch):
    (tmp_path / "omni_test_enc_mod.py").write_text(
        "from tasks_dummies import TinyLinearEncoder as Enc\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AttributeError, match="entries.py"):
        nope = ChoiceEntry("encoder", "x", "omni_test_enc_mod:Nope")
        ChoiceTable(espnet2.tasks.asr, ("encoder",), [nope])
    enc = ChoiceEntry("encoder", "x", "omni_test_enc_mod:Enc")
    table = ChoiceTable(espnet2.tasks.asr, ("encoder",), [enc])
    assert table.added("encoder") == {"x": TinyLinearEncoder}
    assert "x" not in espnet2.tasks.asr.encoder_choices.classes
    sys.modules.pop("omni_test_enc_mod", None)


@pytest.mark.parametrize("target", ["no_colon", "mod:", ":Cls"])
def test_bad_entry_target_raises(target):
    with pytest.raises(ValueError, match="package.module:ClassName"):
        ChoiceEntry("encoder", "k", target)


def test_omni_conformer_registered_iff_its_module_exists():
    exists = importlib.util.find_spec("espnet_omni.nets.omni_conformer") is not None
    for table, entries in ((ASR_CHOICES, ASR_ENTRIES), (SSL_CHOICES, SSL_ENTRIES)):
        assert any(e.key == "omni_conformer" for e in entries)
        added = table.added("encoder")
        if exists:
            assert issubclass(added["omni_conformer"], AbsEncoder)
            assert "encoder:omni_conformer" not in table.skipped
        else:
            assert "omni_conformer" not in added
            assert "encoder:omni_conformer" in table.skipped


def test_import_is_idempotent():
    snapshot = dict(espnet2.tasks.asr.encoder_choices.classes)
    again = importlib.import_module("espnet_omni.tasks")
    assert again is espnet_omni.tasks and again.OmniASRTask is OmniASRTask
    # A second table over the same ESPnet module (what a re-import builds)
    # has the same classes and leaves ESPnet's registry as it was.
    second = ChoiceTable(espnet2.tasks.asr, ASR_CHOICES.names, ASR_ENTRIES)
    for name in ASR_CHOICES.names:
        assert second.added(name).keys() <= ASR_CHOICES.added(name).keys()
    assert espnet2.tasks.asr.encoder_choices.classes == snapshot


def test_ssl_task_builds_stock_model_through_our_choices(tmp_path):
    args = OmniSSLTask.get_parser().parse_args(
        [
            "--token_list", str(write_tokens(tmp_path)),
            "--frontend", "default",
            "--frontend_conf", "{n_fft: 128, hop_length: 64, n_mels: 10}",
            "--normalize", "none",
            "--preencoder", "none",
            "--encoder", "transformer",
            "--encoder_conf", "{output_size: 8, attention_heads: 2, linear_units: 8,"
            " num_blocks: 1, input_layer: conv2d}",
        ]
    )
    args.loss = [{"name": "hubert", "conf": {"num_classes": 5, "final_dim": 4}}]
    before = espnet2.tasks.ssl.loss_choices
    model = OmniSSLTask.build_model(args)
    assert espnet2.tasks.ssl.loss_choices is before
    assert type(model.encoder).__name__ == "TransformerEncoder"
