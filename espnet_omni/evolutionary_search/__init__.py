"""Evolutionary search over per-layer sparsity vectors (model-free).

Imports no torch, no ESPnet and nothing else from espnet_omni: a candidate is
a tuple of floats (one sparsity per dimension), the budget measure and the
score are callables supplied by the caller.
"""

from espnet_omni.evolutionary_search.budgets import BudgetSweep, search_budgets
from espnet_omni.evolutionary_search.cache import ScoreCache
from espnet_omni.evolutionary_search.evolution import EvolutionConfig, EvolutionSearch, SearchResult
from espnet_omni.evolutionary_search.pareto import ParetoPoint, best_within, pareto_front

__all__ = [
    "BudgetSweep",
    "EvolutionConfig",
    "EvolutionSearch",
    "ParetoPoint",
    "ScoreCache",
    "SearchResult",
    "best_within",
    "pareto_front",
    "search_budgets",
]
