"""The evidence: analysis of the records, statistics, figures and the report."""
