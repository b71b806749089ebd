"""Supernet trainer: each sampling rule trains, per-subnet stats are reported,
the step is K sub-networks with one optimizer step, and resume continues."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch
import yaml

from espnet_omni.bin import asr_train
from espnet_omni.sparsity.subnet import SearchSpace
from espnet_omni.testing.tiny_asr import collect_stats_flags, train_flags, write_corpus
from espnet_omni.train.samplers import SamplerConfig, plan_step
from espnet_omni.train.supernet import SupernetConfig, _masked_kl, split_batch

pytestmark = pytest.mark.filterwarnings("ignore:No valid stats found:UserWarning")
STATS = Path("exp/stats")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("supernet")
    write_corpus(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        asr_train.main(collect_stats_flags(STATS, "omni_conformer"))
    return root


def _train(root: Path, out: str, omni_conf: str, *extra: str) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        asr_train.main(train_flags(STATS, Path(out), "omni_conformer") + ["--omni_conf", omni_conf, *extra])
    return torch.load(root / out / "checkpoint.pth", weights_only=False)


def _train_stats(ckpt: dict, epoch: int = 1) -> dict:
    return ckpt["reporter"]["stats"][epoch]["train"]


@pytest.mark.parametrize(
    "conf, tags",
    [
        ("{sampler: {rule: sandwich, num_subnets: 3}}", ["max", "min", "rand0"]),
        ("{sampler: {rule: uniform, num_subnets: 2}}", ["rand0", "rand1"]),
        ("{sampler: {rule: fixed, fixed: [0.0, 0.7]}}", ["s00", "s70"]),
        ("{sampler: {rule: sandwich, num_subnets: 2}, distill_weight: 0.5}", ["max", "min"]),
    ],
)
def test_each_rule_trains_and_reports_per_subnet_losses(corpus, conf, tags):
    out = f"exp/sn_{abs(hash(conf))}"
    ckpt = _train(corpus, out, conf)
    stats = _train_stats(ckpt)
    for tag in tags:
        assert f"loss_{tag}" in stats and stats[f"loss_{tag}"] == stats[f"loss_{tag}"]  # not NaN
    # the step's loss is the mean of the sub-networks' losses, plus the weighted distillation term of
    # the student (min): the KL of two different sub-networks' posteriors is > 0 (0 = a teacher that is
    # the student itself)
    weight = yaml.safe_load(conf).get("distill_weight", 0.0)
    distill = stats["distill_min"] if weight else 0.0
    if weight:
        assert distill > 1e-6
    mean = sum(stats[f"loss_{t}"] for t in tags) / len(tags)
    assert stats["loss"] == pytest.approx(mean + weight * distill / len(tags), rel=1e-5)
    valid = ckpt["reporter"]["stats"][1]["valid"]
    for s in ("s00", "s50", "s70", "s90"):
        assert f"loss_{s}" in valid
    assert valid["loss"] == pytest.approx(sum(valid[f"loss_{s}"] for s in ("s00", "s50", "s70", "s90")) / 4)
    compute = json.loads((corpus / out / "compute.json").read_text())
    assert compute["train_cpu_seconds"] > 0 and compute["subnets_per_step"] == len(tags)
    assert compute["torch_threads"] == [torch.get_num_threads()]


def test_one_optimizer_step_per_k_subnets(corpus):
    """8 utterances, batch 4 -> 2 mini-batches -> 2 Adam steps whatever K is."""
    ckpt = _train(corpus, "exp/sn_steps", "{sampler: {rule: sandwich, num_subnets: 3}}")
    adam_steps = {int(s["step"]) for s in ckpt["optimizers"][0]["state"].values()}
    assert adam_steps == {2}
    assert _train_stats(ckpt)["total_count"] == 2 * 3  # micro-steps seen by the reporter


def test_split_batch_gives_each_subnet_its_own_slice(corpus):
    """K=2 on 1/2 of each mini-batch: still one Adam step per mini-batch, one pass over the data."""
    out = "exp/sn_split"
    ckpt = _train(corpus, out, "{sampler: {rule: sandwich, num_subnets: 2}, split_batch: true}")
    assert {int(s["step"]) for s in ckpt["optimizers"][0]["state"].values()} == {2}
    stats = _train_stats(ckpt)
    assert stats["loss_max"] == stats["loss_max"] and stats["loss_min"] == stats["loss_min"]
    compute = json.loads((corpus / out / "compute.json").read_text())
    assert compute["subnets_per_step"] == 2 and compute["passes_per_epoch"] == 1


def test_split_batch_slices_rows_and_trims_padding():
    n = 7
    lens = torch.tensor([10, 9, 9, 7, 5, 4, 2])
    batch = {"speech": torch.arange(n * 10.0).view(n, 10), "speech_lengths": lens,
             "text": torch.ones(n, 6, dtype=torch.long), "text_lengths": torch.tensor([6, 5, 5, 3, 3, 2, 1]),
             "utt_id": "not a tensor"}
    uids = [f"u{i}" for i in range(n)]
    parts = split_batch(uids, batch, 3)
    assert [u for u, _ in parts] == [uids[0:2], uids[2:4], uids[4:7]]
    assert [tuple(p["speech"].shape) for _, p in parts] == [(2, 10), (2, 9), (3, 5)]
    assert [tuple(p["text"].shape) for _, p in parts] == [(2, 6), (2, 5), (3, 3)]
    assert torch.equal(torch.cat([p["speech_lengths"] for _, p in parts]), lens)
    assert torch.equal(parts[1][1]["speech"], batch["speech"][2:4, :9])
    assert all(p["utt_id"] == "not a tensor" for _, p in parts)
    whole = split_batch(uids[:2], {k: v[:2] if torch.is_tensor(v) else v for k, v in batch.items()}, 3)
    assert len(whole) == 3 and all(u == uids[:2] and p["speech"].shape == (2, 10) for u, p in whole)


def test_resume_continues_where_it_stopped(corpus):
    conf = "{sampler: {rule: sandwich, num_subnets: 2}}"
    _train(corpus, "exp/sn_resume", conf)
    ckpt = _train(corpus, "exp/sn_resume", conf, "--max_epoch", "2", "--resume", "true")
    assert sorted(ckpt["reporter"]["stats"]) == [1, 2]
    assert _train_stats(ckpt, 2)["total_count"] == 2 * 2 * 2
    config = yaml.safe_load((corpus / "exp/sn_resume/config.yaml").read_text())
    assert config["omni_conf"]["sampler"]["num_subnets"] == 2


def test_plain_encoder_with_omni_conf_is_refused(corpus):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(corpus)
        with pytest.raises(ValueError, match="no supernet verbs"):
            asr_train.main(train_flags(STATS, Path("exp/bad"), "conformer") + ["--omni_conf", "{sampler: {rule: dense}}"])


def test_schedule_caps_sampled_sparsity():
    from espnet_omni.train.supernet import SupernetState

    class Enc:
        mask_spec = SearchSpace(("a",)).spec

        def prunable_layers(self):
            return ["a", "b"]

    cfg = SupernetConfig.from_dict(
        {"sampler": {"rule": "sandwich", "num_subnets": 4}, "schedule": {"final_sparsity": 0.8, "end_step": 100}}
    )
    state = SupernetState(cfg, Enc(), accum_grad=1)
    assert max(v for ms in state.plan(0) for v in ms.subnet.sparsities.values()) == 0.0
    assert max(v for ms in state.plan(1000) for v in ms.subnet.sparsities.values()) == pytest.approx(0.8)
    assert state.plan(7)[2].subnet == state.plan(7)[2].subnet  # deterministic per step
    fixed = SupernetState(SupernetConfig.from_dict({"sampler": {"rule": "fixed", "fixed": [0.7]},
                                                    "schedule": {"final_sparsity": 0.7, "end_step": 10}}), Enc(), 1)
    assert fixed.plan(0)[0].subnet.sparsities["a"] == 0.0 and fixed.plan(10)[0].subnet.sparsities["a"] == 0.7


class _Enc:
    mask_spec = SearchSpace(("a",)).spec

    def prunable_layers(self):
        return ["a", "b"]


def test_dual_mode_plan_runs_dense_full_then_sparse_streaming():
    from espnet_omni.train.supernet import SupernetState

    cfg = SupernetConfig.from_dict({"dual_mode": {"streaming_sparsity": 0.7, "full_weight": 0.5,
                                                  "chunk_sizes": [4, 8]}})
    state = SupernetState(cfg, _Enc(), accum_grad=1)
    plan = state.plan(3)
    assert state.k == 2 and [ms.tag for ms in plan] == ["full", "stream"]
    assert plan[0].mode == "full" and set(plan[0].subnet.sparsities.values()) == {0.0} and plan[0].weight == 0.5
    assert plan[1].mode == "streaming" and set(plan[1].subnet.sparsities.values()) == {0.7}
    assert {state.plan(t)[1].chunk_size for t in range(40)} == {4, 8}
    omni = SupernetState(SupernetConfig.from_dict({"sampler": {"rule": "sandwich", "num_subnets": 2},
                                                   "dual_mode": {"streaming_sparsity": None}}), _Enc(), 1)
    assert [ms.tag for ms in omni.plan(0)] == ["full", "stream_max", "stream_min"] and omni.k == 3


def test_full_weight_zero_trains_streaming_alone():
    from espnet_omni.train.supernet import SupernetState, valid_subnets

    cfg = SupernetConfig.from_dict({"dual_mode": {"streaming_sparsity": 0.7, "full_weight": 0.0},
                                    "schedule": {"final_sparsity": 0.7, "end_step": 10}, "valid_sparsities": [0.7]})
    state = SupernetState(cfg, _Enc(), accum_grad=1)
    assert state.k == 1 and [ms.mode for ms in state.plan(20)] == ["streaming"]
    assert set(state.plan(0)[0].subnet.sparsities.values()) == {0.0}  # ramps like gradual pruning
    assert set(state.plan(20)[0].subnet.sparsities.values()) == {0.7}
    assert [ms.mode for ms in valid_subnets(_Enc(), cfg)] == ["streaming"]


@pytest.mark.parametrize("bad, match", [({"full_weight": -1}, "full_weight"), ({"chunk_sizes": [0]}, "chunk_sizes"),
                                         ({"streaming_sparsity": 1.0}, "streaming_sparsity"), ({"chunk": 4}, "chunk")])
def test_bad_dual_mode_config_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        SupernetConfig.from_dict({"dual_mode": bad})


def test_sandwich_plan_has_the_two_ends():
    space = SearchSpace(("a", "b", "c"), (0.0, 0.3, 0.6))
    plan = plan_step(space, SamplerConfig("sandwich", 4), random.Random(1))
    assert [t for t, _ in plan] == ["max", "min", "rand0", "rand1"]
    assert set(plan[0][1].sparsities.values()) == {0.0} and set(plan[1][1].sparsities.values()) == {0.6}


def test_masked_kl_matches_naive_reference():
    torch.manual_seed(0)
    t = torch.log_softmax(torch.randn(2, 5, 4), -1)
    s = torch.randn(2, 5, 4)
    lens = torch.tensor([5, 3])
    ref = []
    for b in range(2):
        for f in range(int(lens[b])):
            p, q = t[b, f].exp(), torch.log_softmax(s[b, f], -1)
            ref.append((p * (t[b, f] - q)).sum())
    assert _masked_kl(t, s, lens) == pytest.approx(torch.stack(ref).mean().item(), rel=1e-5)


def test_masked_kl_closed_form_values():
    """KL(p || q) for p = (1/2, 1/2), q = (1/4, 3/4) is ln(4/3) / 2 = 0.1438 (the reverse
    KL(q || p) = 3/4 ln(3/2) - 1/4 ln(2) = 0.1308 would be the wrong direction); identical
    distributions give 0; frames past a length count for nothing; the mean is over valid frames."""
    p = torch.log(torch.tensor([0.5, 0.5]))
    q_logits = torch.log(torch.tensor([0.25, 0.75])) + 3.0  # logits: any shift
    teacher = torch.stack([p, p, p]).expand(2, 3, 2).clone()  # (B=2, T=3, V=2)
    student = torch.stack([q_logits, q_logits, q_logits]).expand(2, 3, 2).clone()
    student[0, 2] = torch.tensor([-50.0, 50.0])  # past lens[0] = 2: ignored
    student[1, 1:] = torch.tensor([9.0, 9.0])  # = p (frame 1 is valid, frame 2 is not)
    lens = torch.tensor([2, 2])
    kl = 0.5 * math.log(4 / 3)
    assert _masked_kl(teacher, student, lens).item() == pytest.approx((kl + kl + kl + 0.0) / 4, rel=1e-6)
    assert _masked_kl(teacher, p.expand(2, 3, 2) - 7.0, lens).item() == pytest.approx(0.0, abs=1e-7)
    one = _masked_kl(teacher[:1, :1], student[:1, :1], torch.tensor([1])).item()
    assert one == pytest.approx(kl, rel=1e-6) and one != pytest.approx(0.75 * math.log(1.5) - 0.25 * math.log(2))


def test_dual_mode_training_reports_both_modes(corpus):
    ckpt = _train(corpus, "exp/sn_dual",
                  "{dual_mode: {streaming_sparsity: 0.5, chunk_sizes: [2, 4]}, valid_sparsities: [0.5], distill_weight: 0.5}",
                  "--encoder_conf", "streaming={chunk_size: 4, left_chunks: -1, lookahead: 0}")
    stats = _train_stats(ckpt)
    assert stats["total_count"] == 2 * 2  # 2 mini-batches x (full + streaming)
    for key in ("loss_full", "loss_stream", "distill_stream"):
        assert stats[key] == stats[key], key
    valid = ckpt["reporter"]["stats"][1]["valid"]
    assert {"loss_full", "loss_stream_s50"} <= set(valid)
    assert valid["loss"] == pytest.approx((valid["loss_full"] + valid["loss_stream_s50"]) / 2)


def test_reported_losses_survive_espnets_in_place_division():
    """ESPnet's loop does ``loss /= accum_grad`` (accum_grad = K for a supernet)
    before it registers the stats; an ESPnet model reports ``loss.detach()``,
    which shares the loss's storage. The reported per-sub-network losses must
    keep their value (a K-times-too-small train loss in the logs otherwise)."""
    from espnet_omni.train.supernet import SupernetState, TaggedModel

    class EspnetLike(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(2.0))

        def forward(self, x):
            loss = self.w * x
            return loss, {"loss_ctc": loss.detach(), "loss": loss.detach()}, torch.tensor(1)

    state = SupernetState(SupernetConfig.from_dict({"sampler": {"rule": "sandwich", "num_subnets": 3}}),
                          _Enc(), accum_grad=1)
    tagged = TaggedModel(EspnetLike(), state)
    for ms in state.plan(0):
        state.micro = ms
        loss, stats, _ = tagged(x=torch.tensor(3.0))
        loss /= 3  # what espnet2.train.trainer.Trainer.train_one_epoch does
        assert float(stats[f"loss_ctc_{ms.tag}"]) == pytest.approx(6.0)
        assert float(stats["loss"]) == pytest.approx(6.0)
        assert float(loss) == pytest.approx(2.0)


@pytest.mark.parametrize("split", [False, True])
def test_replay_hands_each_subnet_its_part(split):
    from espnet_omni.train.supernet import SupernetState, replay

    class Enc(_Enc):
        active: list = []

        def refresh_masks(self):
            pass

        def set_active_subnet(self, cfg):
            self.active.append(cfg)

        def set_max_net(self):
            pass

    cfg = SupernetConfig.from_dict({"sampler": {"rule": "sandwich", "num_subnets": 2}, "split_batch": split})
    enc = Enc()
    state = SupernetState(cfg, enc, accum_grad=1)
    batch = {"speech": torch.randn(4, 8), "speech_lengths": torch.tensor([8, 8, 6, 5])}
    seen = [(state.micro.tag, u, p["speech"]) for u, p in replay([(list("abcd"), batch)], state, 0)]
    assert [t for t, _, _ in seen] == ["max", "min"]
    if split:
        assert [u for _, u, _ in seen] == [list("ab"), list("cd")]
        assert torch.equal(seen[1][2], batch["speech"][2:, :6])
    else:
        assert all(u == list("abcd") and x is batch["speech"] for _, u, x in seen)


def test_group_supernet_trains_and_exports_structured(corpus, tmp_path):
    """A supernet of tied heads / units / channels trains with the sandwich rule and
    in-place distillation, and its sparsest sub-network exports physically smaller."""
    from espnet_omni.export import export_asr_model
    from espnet_omni.sparsity.subnet import SubnetConfig
    from espnet_omni.tasks import OmniASRTask

    out = "exp/sn_group"
    ckpt = _train(corpus, out, "{sampler: {rule: sandwich, num_subnets: 3}, choices: [0.25, 0.5, 0.75],"
                  " distill_weight: 0.5}", "--encoder_conf", "mask_granularity=group",
                  "--encoder_conf", "prune_frontend=true")
    stats = _train_stats(ckpt)
    assert all(stats[f"loss_{t}"] == stats[f"loss_{t}"] for t in ("max", "min", "rand0"))
    config = corpus / out / "config.yaml"
    assert yaml.safe_load(config.read_text())["encoder_conf"]["mask_granularity"] == "group"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(corpus)  # the config's stats file is relative to the corpus
        model, _ = OmniASRTask.build_model_from_file(config, corpus / out / "1epoch.pth", "cpu")
    enc = model.encoder
    assert "frontend_channels" in enc.prunable_layers()
    cfg = SubnetConfig.uniform(enc.prunable_layers(), 0.75, enc.mask_spec)
    report = export_asr_model(model.eval(), yaml.safe_load(config.read_text()), cfg, "structured", tmp_path)
    assert report.encoder_sizes["ffn_units"] == [8]  # 32 units, 75% dropped
    assert report.nonzero_params < 0.5 * report.total_params
