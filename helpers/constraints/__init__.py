"""The constraints: scenarios, sparsity budgets, projections and thin models."""
