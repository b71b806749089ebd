"""The sub-network search: which sub-network of a supernet is best for a budget.

- :mod:`~espnet_omni.search.subnet_search`: the budgets' evolutionary search over a trained
  supernet (its cost tables, cache, fronts and ``subnet_<budget>.yaml``), driven by
  ``bin/search.py``;
- :mod:`~espnet_omni.search.subnet_eval`: one candidate's dev-set WER (the evaluator);
- :mod:`~espnet_omni.search.dev_set`, :mod:`~espnet_omni.search.bn_calib`: the dev
  utterances it decodes and the BatchNorm re-calibration of a sub-network;
- :mod:`~espnet_omni.search.latency_table`: a measured per-group latency cost model.

The model-free evolution (NSGA-style, budgets, Pareto fronts) is
:mod:`espnet_omni.evolutionary_search`, a layer below; decoding is :mod:`espnet_omni.inference`.
"""
